"""Training samples, aspect-ratio buckets and the batch order, with a data position for exact resume.

Each epoch's batch order is a pure function of (seed, epoch), so a resumed run needs only the epoch and
the batch index to continue with exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One training example: an image, its caption, and the bucket (width, height) it is trained at."""

    image_path: str
    caption: str
    bucket: tuple[int, int]


def make_buckets(resolution: int, step: int = 64, min_side: int = 256, max_side: int = 1024) -> list[tuple[int, int]]:
    """Bucket sizes (w, h), multiples of `step`, with area ≤ resolution² (kohya's scheme)."""
    step = min(step, resolution)
    min_side = max(step, min(min_side, resolution) // step * step)
    max_side = max(resolution, max_side // step * step)
    area = resolution * resolution
    buckets = {(resolution // step * step,) * 2}
    w = min_side
    while w <= max_side:
        h = min(max_side, (area // w) // step * step)
        if h >= min_side:
            buckets.add((w, h))
            buckets.add((h, w))
        w += step
    return sorted(buckets)


# SDXL's training resolutions, (width, height), from the SDXL report (Podell et al. 2023, appendix I): the
# 1024² area at aspect ratios 1:4 .. 4:1, sides multiples of 64.
SDXL_RESOLUTIONS = (
    (512, 2048), (512, 1984), (512, 1920), (512, 1856), (576, 1792), (576, 1728), (576, 1664), (640, 1600),
    (640, 1536), (704, 1472), (704, 1408), (704, 1344), (768, 1344), (768, 1280), (832, 1216), (832, 1152),
    (896, 1152), (896, 1088), (960, 1088), (960, 1024), (1024, 1024), (1024, 960), (1088, 960), (1088, 896),
    (1152, 896), (1152, 832), (1216, 832), (1280, 768), (1344, 768), (1344, 704), (1408, 704), (1472, 704),
    (1536, 640), (1600, 640), (1664, 576), (1728, 576), (1792, 576), (1856, 512), (1920, 512), (1984, 512),
    (2048, 512),
)


def make_sdxl_buckets(resolution: int = 1024, step: int = 64) -> list[tuple[int, int]]:
    """SDXL's own bucket list (`SDXL_RESOLUTIONS`), scaled from 1024² to resolution² with sides multiples of `step`."""
    step = min(step, resolution)
    scale = resolution / 1024
    return sorted({(max(step, round(w * scale / step) * step), max(step, round(h * scale / step) * step))
                   for w, h in SDXL_RESOLUTIONS})


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the image's (in log space, so 2:1 and 1:2 are symmetric)."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def build_samples(caption_set, resolution: int, buckets: bool = True, step: int = 64,
                  min_side: int = 256, max_side: int = 1024, family: str = "sd1") -> list[Sample]:
    """One `Sample` per caption record, each assigned to the bucket nearest its image's aspect ratio.

    `family="sdxl"`: the buckets are SDXL's own list (`make_sdxl_buckets`; `min_side`/`max_side` do not apply).
    """
    from PIL import Image

    sizes: dict[str, tuple[int, int]] = {}
    if not buckets:
        table = [(resolution, resolution)]
    elif family == "sdxl":
        table = make_sdxl_buckets(resolution, step)
    else:
        table = make_buckets(resolution, step, min_side, max_side)
    samples = []
    for n, rec in enumerate(caption_set.records):
        path = rec.image_path
        if path not in sizes:
            if not Path(path).is_file():
                raise FileNotFoundError(f"caption record {n} ({rec.source_id or path}): image {path} does not exist")
            with Image.open(path) as im:  # reads the header only
                sizes[path] = im.size
        if not rec.caption.strip():
            raise ValueError(f"caption record {n} ({rec.source_id or path}): empty caption; drop it or fix the source")
        samples.append(Sample(path, rec.caption, nearest_bucket(*sizes[path], table)))
    if not samples:
        raise ValueError("the caption set has no records to train on")
    return samples


def load_pixels(path: str, bucket: tuple[int, int], crop: str = "center", flip: bool = False, rng=None):
    """The image resized to cover `bucket`, cropped to it (center, or random with `rng`), as a [-1, 1] CHW tensor."""
    return load_image(path, bucket, crop, flip, rng)[0]


def load_image(path: str, bucket: tuple[int, int], crop: str = "center", flip: bool = False, rng=None):
    """(`load_pixels`' tensor, SDXL's `add_time_ids` for it): original (h, w), crop (top, left), bucket (h, w).

    The crop's top-left is in the resized image, as SDXL was trained (and kohya / diffusers' SDXL scripts do);
    a flipped image's crop is mirrored (`left` counted from the right edge), so it names the pixels it shows.
    """
    import numpy as np
    import torch
    from PIL import Image

    from ..models.conditioning import add_time_ids

    w, h = bucket
    with Image.open(path) as im:
        im = im.convert("RGB")
        original = (im.height, im.width)
        scale = max(w / im.width, h / im.height)
        rw, rh = max(w, round(im.width * scale)), max(h, round(im.height * scale))
        im = im.resize((rw, rh), Image.Resampling.BICUBIC)
        if crop == "random" and rng is not None:
            left, top = int(rng.integers(0, rw - w + 1)), int(rng.integers(0, rh - h + 1))
        else:
            left, top = (rw - w) // 2, (rh - h) // 2
        im = im.crop((left, top, left + w, top + h))
        if flip:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            left = rw - left - w
        arr = np.asarray(im, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0, add_time_ids(original, (top, left), (h, w))


def sample_rng(seed: int, epoch: int, index: int):
    """A numpy generator for one sample in one epoch (flip/crop decisions survive a resume)."""
    import numpy as np

    return np.random.default_rng([seed, epoch, index])


class BatchPlan:
    """Which sample indices form each batch of each epoch, for one process of `world_size`.

    Batches never mix buckets. The global batch list is cut to a multiple of `world_size`, and process
    `rank` takes every `world_size`-th batch, so every process runs the same number of steps.
    """

    def __init__(self, samples: list[Sample], batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
        self.batch_size, self.seed, self.world_size, self.rank = batch_size, seed, world_size, rank
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(samples):
            self.by_bucket.setdefault(s.bucket, []).append(i)
        n_batches = sum(math.ceil(len(v) / batch_size) for v in self.by_bucket.values())
        self.batches_per_epoch = n_batches // world_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(samples)} samples make {n_batches} batches, fewer than the {world_size} processes")

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of `epoch`, in order."""
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for bucket in sorted(self.by_bucket):
            idx = [self.by_bucket[bucket][i] for i in rng.permutation(len(self.by_bucket[bucket]))]
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        batches = batches[: self.batches_per_epoch * self.world_size]
        return batches[self.rank::self.world_size]

    def iterate(self, epoch: int = 0, batch: int = 0):
        """Yield (epoch, batch_index, sample_indices) forever, starting at the given data position."""
        while True:
            for b, indices in enumerate(self.epoch_batches(epoch)):
                if b >= batch:
                    yield epoch, b, indices
            epoch, batch = epoch + 1, 0
