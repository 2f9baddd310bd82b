"""Encode latents and text embeddings once, before step 1, into an on-disk cache reused across runs.

The VAE and text encoder are frozen, so encoding them every step (what diffusers' and kohya's scripts do
without caching) only repeats work. Entries are keyed by a fingerprint of the encoder weights, the
encoding dtype, the image file (path, size, mtime), the bucket size, crop and flip, or the caption text.
One small safetensors file per entry, so a run on a subset or a superset of the data reuses what exists.

Every entry carries a SHA-256 of its tensors in its safetensors metadata. Before a run uses the cache, each
entry it needs is read and checked (it parses, has its tensors, matches its checksum, holds only finite
values); a bad one is logged by path and encoded again (`check_entry`). Reading the entries is what the
in-memory cache does anyway; bench/cache_check.py measures the cost.

SDXL (a second text encoder given): each latent file also holds the image's `time_ids` (original size, crop,
target size: they follow from the same image, bucket, crop and flip), and each caption file the pooled
embedding of the second encoder next to the concatenated hidden states.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_path
from .dataset import PIXELS_VERSION, ImageDecodeError

log = logging.getLogger(__name__)

# Keep the whole cache in RAM below this size, otherwise read each batch's entries from disk.
IN_MEMORY_BYTES = 2 << 30


def model_fingerprint(module, extra: str = "") -> str:
    """A short hash of a module's class, config and weights (a strided sample of each tensor)."""
    import torch

    h = hashlib.sha256(type(module).__name__.encode())
    config = getattr(module, "config", None)
    if config is not None:
        cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        # Private keys are bookkeeping (diffusers' `_use_default_values` is a set in random order).
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, t in module.state_dict().items():
            flat = t.detach().reshape(-1)
            stride = max(1, flat.numel() // 256)
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(flat[::stride].float().cpu().numpy().tobytes())
    h.update(extra.encode())
    return h.hexdigest()[:16]


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


class EncodeError(ValueError):
    """The VAE or text encoder gave non-finite values for an input (the message names it)."""


def tensors_digest(tensors: dict) -> str:
    """SHA-256 of named tensors (names, dtypes, shapes and bytes), the checksum stored in each cache entry."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _save_atomic(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"sha256": tensors_digest(tensors)})


def check_entry(path: Path, names: tuple[str, ...]) -> str | None:
    """Why the cache entry at `path` must be encoded again (unreadable, a tensor missing, checksum mismatch,
    non-finite values, no checksum: written before entries had one), or None when it is sound."""
    import torch
    from safetensors.torch import load

    try:
        data = path.read_bytes()
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
        tensors = load(data)
    except Exception as e:  # truncated or random bytes: safetensors and json raise several types
        return f"unreadable ({type(e).__name__}: {e})"
    missing = [k for k in names if k not in tensors]
    if missing:
        return f"no tensor {', '.join(missing)}"
    if "sha256" not in meta:
        return "no checksum (written by an older version)"
    if meta["sha256"] != tensors_digest(tensors):
        return "checksum mismatch (the file changed after it was written)"
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        return f"non-finite values (NaN/inf) in {', '.join(bad)}"
    return None


def encode_images(vae, pixels):
    """Scaled VAE latents of a [-1, 1] batch (the posterior mean: a deterministic cache value)."""
    import torch

    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        return dist.mean * vae.config.scaling_factor


def encode_captions(text_encoder, tokenizer, captions: list[str]):
    """Last hidden state of the text encoder for `captions` (padded to the tokenizer's max length)."""
    from ..models.conditioning import encode_prompts

    return encode_prompts({"text_encoder": text_encoder, "tokenizer": tokenizer}, captions)["embedding"]


class TensorStore:
    """Tensors by index, held in RAM or read from their cache files on demand."""

    def __init__(self, paths: list[Path], name: str, in_memory: bool):
        self.paths, self.name = paths, name
        self.items = [self._read(p) for p in paths] if in_memory else None

    def _read(self, path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:  # only this tensor (a file may hold several)
                return f.get_tensor(self.name)
        except Exception as e:  # it was checked before the run: something changed it since
            raise OSError(f"{path}: cannot read this latent-cache entry ({type(e).__name__}: {e}); delete it, "
                          "and the next run encodes it again") from e

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if self.items is not None:
            return self.items[i]
        return self._read(self.paths[i])


@dataclass
class CachedData:
    """The cached tensors and, per sample, which latent/embedding it uses."""

    latents: TensorStore
    latents_flipped: TensorStore | None
    embeddings: TensorStore
    sample_latent: list[int]
    sample_embedding: list[int]
    stats: dict = field(default_factory=dict)  # hits and encodes, for the log and the tests
    # SDXL only: the size conditioning per latent (and flipped latent), the pooled text per caption.
    time_ids: TensorStore | None = None
    time_ids_flipped: TensorStore | None = None
    pooled: TensorStore | None = None
    # Per sample, the embeddings of its caption variants (adverb mode decorrelate); None when no sample has any.
    sample_variants: list[list[int]] | None = None

    def embedding_index(self, i: int, variant: int | None = None) -> int:
        """The cached embedding sample `i` uses: its caption, or its caption variant number `variant`."""
        if variant is not None and self.sample_variants and self.sample_variants[i]:
            return self.sample_variants[i][variant]
        return self.sample_embedding[i]

    def batch(self, indices: list[int], flips: list[bool] | None = None, variants: list[int] | None = None):
        """(latents, conditioning) stacked for the sample `indices`: the conditioning is the text embeddings,
        or for SDXL the UNet's keyword arguments (`trainer.models.conditioning.unet_kwargs`).
        `variants`: per sample, which caption variant to use (decorrelate mode)."""
        import torch

        from ..models.conditioning import unet_kwargs

        flips = flips or [False] * len(indices)
        texts = [self.embedding_index(i, v) for i, v in zip(indices, variants or [None] * len(indices))]
        lat = [(self.latents_flipped if f else self.latents)[self.sample_latent[i]] for i, f in zip(indices, flips)]
        emb = torch.stack([self.embeddings[k] for k in texts])
        if self.pooled is None:
            return torch.stack(lat), emb
        ids = [(self.time_ids_flipped if f else self.time_ids)[self.sample_latent[i]] for i, f in zip(indices, flips)]
        pooled = torch.stack([self.pooled[k] for k in texts])
        return torch.stack(lat), unet_kwargs({"embedding": emb, "pooled": pooled}, torch.stack(ids))


def build_cache(samples, cache_dir: str | Path, vae, text_encoder, tokenizer, *, crop: str = "center",
                flips: bool = False, batch_size: int = 8, rank: int = 0, world_size: int = 1,
                wait=lambda: None, progress: bool = True, on_progress=None, text_encoder_2=None,
                tokenizer_2=None) -> CachedData:
    """Make sure every sample's latent (and flipped latent) and caption embedding is cached; load them.

    With several processes each encodes its share (`rank::world_size`) of the missing entries, then
    `wait()` (a barrier) lets all of them read the whole cache. `on_progress(done, total)`: called as this
    process's items are encoded (a host's progress bar; the tqdm bar is for the console).
    `text_encoder_2`/`tokenizer_2` (SDXL): both encoders' states, the pooled text and the `time_ids` are cached.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    sdxl = text_encoder_2 is not None
    text = {"text_encoder": text_encoder, "tokenizer": tokenizer, "text_encoder_2": text_encoder_2,
            "tokenizer_2": tokenizer_2}
    vae_id = model_fingerprint(vae, str(vae.dtype))
    te_id = _text_fingerprint(text)

    latent_jobs, sample_latent, captions, sample_embedding, sample_variants = _index_samples(samples, crop)

    def lat_path(ident, flip):
        # SDXL entries also hold time_ids: their own keys, so an SD1 entry of the same VAE is never taken for one.
        k = _key("latent", vae_id, *ident, flip, *(("time_ids",) if sdxl else ()), *_pixels_version())
        return cache_dir / "latents" / k[:2] / f"{k}.safetensors"

    def txt_path(text):
        k = _key("text", te_id, text)
        return cache_dir / "text" / k[:2] / f"{k}.safetensors"

    orientations = (False, True) if flips else (False,)
    lat_names, txt_names = (("latent", "time_ids"), ("embedding", "pooled")) if sdxl else (("latent",), ("embedding",))
    needs_encoding = _EntryCheck(report=rank == 0)  # every process checks the entries; one says what it found
    lat_todo = [(ident, f) for ident in latent_jobs for f in orientations
                if needs_encoding(lat_path(ident, f), lat_names)]
    txt_todo = [t for t in captions if needs_encoding(txt_path(t), txt_names)]
    needs_encoding.finish()
    stats = {
        "latents_total": len(latent_jobs) * len(orientations), "latents_encoded": len(lat_todo),
        "text_total": len(captions), "text_encoded": len(txt_todo),
    }
    wait()  # every process lists what is missing before any of them writes, so the shares agree
    mine_lat, mine_txt = lat_todo[rank::world_size], txt_todo[rank::world_size]
    bar = tqdm(total=len(mine_lat) + len(mine_txt), desc="caching latents + text", unit="item",
               disable=not progress or not (mine_lat or mine_txt), leave=False)
    total = len(mine_lat) + len(mine_txt)

    def advance(n: int) -> None:
        bar.update(n)
        if on_progress is not None:
            on_progress(bar.n, total)

    if on_progress is not None and total:
        on_progress(0, total)
    undecodable = _encode_and_save(mine_lat, lat_path, mine_txt, txt_path, vae, text, crop=crop,
                                   batch_size=batch_size, advance=advance)
    bar.close()
    wait()
    _raise_undecodable(undecodable)

    lat_bytes = sum(lat_path(i, False).stat().st_size for i in latent_jobs[:1]) * len(latent_jobs) * len(orientations)
    txt_bytes = sum(txt_path(t).stat().st_size for t in list(captions)[:1]) * len(captions)
    in_memory = lat_bytes + txt_bytes <= IN_MEMORY_BYTES
    return _open_cache([lat_path(i, False) for i in latent_jobs], [lat_path(i, True) for i in latent_jobs] if flips else [],
                       [txt_path(t) for t in captions], in_memory, sdxl,
                       sample_latent=sample_latent, sample_embedding=sample_embedding, stats=stats,
                       sample_variants=sample_variants if any(sample_variants) else None)


def _index_samples(samples, crop: str):
    """The distinct images (as cache identities) and caption texts of `samples`, and each sample's index into them:
    (image identities, per-sample image index, {caption: index}, per-sample caption index, per-sample variant
    indices)."""
    image_keys: dict[tuple, int] = {}
    latent_jobs = []  # (absolute path, size, mtime, bucket, crop): a changed file is a new entry
    sample_latent = []
    for s in samples:
        st = os.stat(s.image_path)
        ident = (os.path.abspath(s.image_path), st.st_size, st.st_mtime_ns, s.bucket, crop)
        if ident not in image_keys:
            image_keys[ident] = len(image_keys)
            latent_jobs.append(ident)
        sample_latent.append(image_keys[ident])
    captions: dict[str, int] = {}
    for s in samples:
        for caption in (s.caption, *getattr(s, "variants", ())):  # decorrelate mode: every variant is encoded once
            captions.setdefault(caption, len(captions))
    sample_embedding = [captions[s.caption] for s in samples]
    sample_variants = [[captions[v] for v in getattr(s, "variants", ())] for s in samples]
    return latent_jobs, sample_latent, captions, sample_embedding, sample_variants


def _raise_undecodable(errors: list[str]) -> None:
    """After the cache pass: one error naming every image that could not be decoded (the first 20)."""
    if not errors:
        return
    shown = "\n  ".join(errors[:20]) + ("\n  ..." if len(errors) > 20 else "")
    raise ImageDecodeError(f"{len(errors)} training image(s) cannot be decoded (the cache keeps every other entry, "
                           f"so the next run encodes only what is missing):\n  {shown}")


def _pixels_version() -> tuple:
    # Entries from before version 2 of the pixels keep their old keys (PIXELS_VERSION 1 adds nothing).
    return ("pixels", PIXELS_VERSION) if PIXELS_VERSION > 1 else ()


class _EntryCheck:
    """Decides which existing entries must be encoded again (`check_entry`), naming each in a log line; entries of
    an older version (no checksum) are counted in one line instead. Only `report`ing processes log."""

    def __init__(self, report: bool):
        self.report, self.legacy = report, []

    def __call__(self, path: Path, names: tuple[str, ...]) -> bool:
        if not path.is_file():
            return True
        problem = check_entry(path, names)
        if problem and problem.startswith("no checksum"):
            self.legacy.append(path)
        elif problem and self.report:
            log.warning(f"latent cache: {path}: {problem}; encoding it again")
        return problem is not None

    def finish(self) -> None:
        if self.legacy and self.report:
            log.warning(f"latent cache: {len(self.legacy)} entries have no checksum (written by an older version, "
                        f"e.g. {self.legacy[0]}); encoding them again")


def _text_fingerprint(text: dict) -> str:
    """Fingerprint of the text encoder(s) and tokenizer(s) a caption embedding depends on."""
    te, tok = text["text_encoder"], text["tokenizer"]
    fp = model_fingerprint(te, str(te.dtype) + getattr(tok, "name_or_path", "") + str(tok.model_max_length))
    if text.get("text_encoder_2") is not None:  # SDXL: the second encoder and its padding too
        te2, tok2 = text["text_encoder_2"], text["tokenizer_2"]
        fp += model_fingerprint(te2, str(te2.dtype) + str(tok2.pad_token) + str(tok2.model_max_length))
    return fp


def _open_cache(lat_files, flip_files, txt_files, in_memory: bool, sdxl: bool, **per_sample) -> CachedData:
    """`CachedData` over the cache files (time_ids and pooled stores for SDXL only)."""
    def store(paths, name, wanted=True):
        return TensorStore(paths, name, in_memory) if wanted else None

    flips = bool(flip_files)
    return CachedData(
        latents=store(lat_files, "latent"), latents_flipped=store(flip_files, "latent", flips),
        embeddings=store(txt_files, "embedding"),
        time_ids=store(lat_files, "time_ids", sdxl), time_ids_flipped=store(flip_files, "time_ids", sdxl and flips),
        pooled=store(txt_files, "pooled", sdxl), **per_sample,
    )


def _encode_and_save(lat_jobs, lat_path, texts, txt_path, vae, text: dict, *, crop: str,
                     batch_size: int, advance) -> None:
    """Encode this process's share of the missing entries in batches and write each to its cache file;
    `advance(n)` after each batch of n. Returns the errors of the images that cannot be decoded (skipped)."""
    import torch

    from ..models.conditioning import encode_prompts
    from .dataset import load_image

    sdxl = text.get("text_encoder_2") is not None

    # Group images by bucket so each VAE batch has one size.
    by_bucket: dict[tuple, list] = {}
    for ident, f in lat_jobs:
        by_bucket.setdefault(ident[3], []).append((ident, f))
    undecodable: dict[str, str] = {}  # image path -> error, once per image (not again for its flipped entry)
    for bucket, jobs in by_bucket.items():
        # VAE activations grow with the pixels: keep a batch's pixels at most `batch_size` 512² images (SDXL's
        # 1024² buckets: a quarter as many images per VAE call, so a 128-channel fp32 feature map of the batch stays
        # about 1 GiB).
        per_call = max(1, min(batch_size, batch_size * 512 * 512 // (bucket[0] * bucket[1])))
        for i in range(0, len(jobs), per_call):
            chunk, loaded = [], []
            for ident, f in jobs[i:i + per_call]:
                try:  # one broken file is named at the end; the others are still encoded and kept
                    loaded.append(load_image(ident[0], bucket, crop, flip=f))
                    chunk.append((ident, f))
                except ImageDecodeError as e:
                    undecodable.setdefault(ident[0], str(e))
            if chunk:
                latents = encode_images(vae, torch.stack([pixels for pixels, _ in loaded]))
                for (ident, f), lat, (_, ids) in zip(chunk, latents, loaded):
                    if not bool(torch.isfinite(lat).all()):
                        raise EncodeError(f"{ident[0]}: the VAE gave non-finite latents (NaN/inf) for this image "
                                          f"at {bucket[0]}x{bucket[1]}; a VAE in float16 overflows on some images: "
                                          "encode in float32 (or use an fp16-fixed VAE)")
                    _save_atomic({"latent": lat, **({"time_ids": ids} if sdxl else {})}, lat_path(ident, f))
            advance(len(jobs[i:i + per_call]))
    for i in range(0, len(texts), batch_size):
        chunk = texts[i:i + batch_size]
        encoded = encode_prompts(text, chunk)
        for n, caption in enumerate(chunk):
            entry = {name: t[n] for name, t in encoded.items()}
            if not all(bool(torch.isfinite(t).all()) for t in entry.values()):
                raise EncodeError(f"the text encoder gave non-finite values (NaN/inf) for the caption {caption!r}")
            _save_atomic(entry, txt_path(caption))
        advance(len(chunk))
    return list(undecodable.values())
