"""The latent cache under faults: damaged entries are found, named and encoded again; broken images are named."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from fixtures_train import caption_set_from_coco, train_captions  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def pipe():
    from trainer.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15")


def _entries(cache: Path, kind: str) -> list[Path]:
    return sorted((cache / kind).rglob("*.safetensors"))


def _all(data, n: int):
    return data.batch(list(range(n)))


def test_damaged_entries_are_named_and_encoded_again(tmp_path, train_captions, pipe, caplog):  # noqa: F811
    from safetensors.torch import load_file, save_file

    from trainer.training.dataset import build_samples
    from trainer.training.latent_cache import build_cache, tensors_digest

    samples = build_samples(train_captions, 64)
    args = (tmp_path, pipe.vae, pipe.text_encoder, pipe.tokenizer)
    first = build_cache(samples, *args, progress=False)
    lat0, emb0 = _all(first, len(samples))
    lats, txts = _entries(tmp_path, "latents"), _entries(tmp_path, "text")
    assert len(lats) == 12 and len(txts) == 12
    damaged = {}
    # truncated (a disk filled up, a copy stopped)
    lats[0].write_bytes(lats[0].read_bytes()[:100])
    damaged[lats[0]] = "unreadable"
    # random bytes
    lats[1].write_bytes(torch.randint(0, 256, (lats[1].stat().st_size,), dtype=torch.uint8).numpy().tobytes())
    damaged[lats[1]] = "unreadable"
    # NaN inside a well-formed entry whose checksum matches: only a look at the values finds it
    t = load_file(lats[2])
    t["latent"][0, 0, 0] = float("nan")
    save_file(t, lats[2], metadata={"sha256": tensors_digest(t)})
    damaged[lats[2]] = "non-finite values"
    # finite garbage: a few bytes of the data changed, the file still parses
    raw = bytearray(lats[3].read_bytes())
    raw[-8:] = b"\x00\x00\x80\x3f" * 2  # two floats now read 1.0
    lats[3].write_bytes(bytes(raw))
    damaged[lats[3]] = "checksum mismatch"
    # a caption entry written without a checksum (an older version's cache)
    save_file(load_file(txts[0]), txts[0])
    damaged[txts[0]] = "no checksum"
    with caplog.at_level(logging.WARNING, logger="trainer.training.latent_cache"):
        again = build_cache(samples, *args, progress=False)
    assert again.stats["latents_encoded"] == 4 and again.stats["text_encoded"] == 1
    for path, reason in damaged.items():
        if reason == "no checksum":  # one line for all of an older version's entries, not one per entry
            assert any(f"1 entries have no checksum (written by an older version, e.g. {path})" in m
                       for m in caplog.messages)
        else:
            assert any(str(path) in m and reason in m and "encoding it again" in m for m in caplog.messages), path
    lat, emb = _all(again, len(samples))
    assert torch.equal(lat, lat0) and torch.equal(emb, emb0)
    assert build_cache(samples, *args, progress=False).stats["latents_encoded"] == 0  # all sound now


def test_entry_damaged_during_a_run_names_its_file(tmp_path, train_captions, pipe):  # noqa: F811
    from trainer.training.dataset import build_samples
    from trainer.training.latent_cache import TensorStore, build_cache

    build_cache(build_samples(train_captions, 64), tmp_path, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                progress=False)
    entry = _entries(tmp_path, "latents")[0]
    entry.write_bytes(b"\x00" * 10)
    with pytest.raises(OSError, match=rf"{entry.name}: cannot read this latent-cache entry.*delete it"):
        TensorStore([entry], "latent", in_memory=False)[0]


def test_undecodable_image_is_named_and_the_rest_is_kept(tmp_path, coco_root, pipe):
    from trainer.training.dataset import ImageDecodeError, build_samples
    from trainer.training.latent_cache import build_cache

    root = Path(shutil.copytree(coco_root, tmp_path / "coco"))
    caps = caption_set_from_coco(root)
    victim = Path(caps.records[5].image_path)
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # the header still reads: bucketing passes it
    samples = build_samples(caps, 64)
    cache = tmp_path / "cache"
    with pytest.raises(ImageDecodeError, match=rf"(?s)1 training image\(s\) cannot be decoded.*{victim.name}.*truncated"):
        build_cache(samples, cache, pipe.vae, pipe.text_encoder, pipe.tokenizer, progress=False)
    assert len(_entries(cache, "latents")) == 11  # the others were encoded and kept
    victim.write_bytes(good)
    stats = build_cache(build_samples(caps, 64), cache, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                        progress=False).stats
    assert stats["latents_encoded"] == 1 and stats["text_encoded"] == 0
