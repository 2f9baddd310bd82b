"""Training samples, aspect-ratio buckets and the batch order, with a data position for exact resume.

Each epoch's batch order is a pure function of (seed, epoch), so a resumed run needs only the epoch and
the batch index to continue with exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..captions.load_report import DataError

# Bump when the pixels `load_image` makes from a file change: cached latents of the old pixels are then
# re-encoded (2: EXIF orientation applied, 16-bit images scaled instead of clipped).
PIXELS_VERSION = 2
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_EXIF_ORIENTATION = 0x0112


class ImageDecodeError(DataError):
    """An image of the training set cannot be decoded (the message names the file)."""


def _decode_error(path, e: Exception) -> ImageDecodeError:
    return ImageDecodeError(f"{path}: cannot decode this training image ({type(e).__name__}: {e}); replace or "
                            "remove it (loading the captions again skips such files and names them in the load "
                            "report)")


def image_size(path) -> tuple[int, int]:
    """(width, height) of the image as displayed, from its header: EXIF orientations 5-8 swap the stored sides."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "PNG":  # Pillow's PNG getexif() decodes the whole image when eXIf is absent
                exif = Image.Exif()
                if "exif" in im.info:
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken files
        raise _decode_error(path, e) from e
    return (h, w) if exif.get(_EXIF_ORIENTATION) in (5, 6, 7, 8) else (w, h)


def to_rgb8(im):
    """`im` as 8-bit RGB. 16-bit greyscale (modes I;16*, and I, which Pillow < 10 uses for 16-bit PNGs) is scaled
    by 255/65535; float (F) is taken as 0..1 when its maximum is at most 1, else as 0..255. Pillow's own
    `convert("RGB")` clips these to 0..255: a 16-bit 50 % grey became white."""
    import numpy as np
    from PIL import Image

    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255 / 65535 if im.mode != "F" else (255.0 if arr.size and arr.max() <= 1.0 else 1.0)
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def open_rgb(path):
    """The image at `path` decoded as 8-bit RGB and upright (Pillow's `ImageOps.exif_transpose`);
    `ImageDecodeError` naming the file when it cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb8(ImageOps.exif_transpose(im))
    except (OSError, ValueError, SyntaxError) as e:
        raise _decode_error(path, e) from e


@dataclass(frozen=True)
class Sample:
    """One training example: an image, its caption, and the bucket (width, height) it is trained at."""

    image_path: str
    caption: str
    bucket: tuple[int, int]
    variants: tuple[str, ...] = ()  # adverb mode decorrelate: the caption texts one of which each epoch uses


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
            sizes[path] = image_size(path)  # reads the header only
        if not rec.caption.strip():
            raise ValueError(f"caption record {n} ({rec.source_id or path}): empty caption; drop it or fix the source")
        variants = tuple(getattr(rec, "variants", ()) or ())
        if any(not v.strip() for v in variants):
            raise ValueError(f"caption record {n} ({rec.source_id or path}): an empty caption variant; re-run "
                             "`python -m trainer prepare --mode decorrelate`")
        samples.append(Sample(path, rec.caption, nearest_bucket(*sizes[path], table), variants))
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
    im = open_rgb(path)
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


def variant_index(seed: int, epoch: int, index: int, k: int) -> int:
    """Which of a sample's `k` caption variants epoch `epoch` trains on: every block of k epochs uses each
    variant once, in an order drawn from (seed, block, index), so it is reproducible and survives a resume."""
    import numpy as np

    if k <= 1:
        return 0
    return int(np.random.default_rng([seed, epoch // k, index, 1]).permutation(k)[epoch % k])


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
