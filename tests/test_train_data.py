"""Buckets, batch order and the latent/text cache (no training)."""
from __future__ import annotations

import pytest
import torch

from fixtures_train import train_captions  # noqa: F401  (fixture)


def test_buckets_cover_aspects_within_the_area():
    from trainer.training.dataset import make_buckets, nearest_bucket

    buckets = make_buckets(512, 64, 256, 1024)
    assert (512, 512) in buckets and (256, 1024) in buckets and (1024, 256) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512 for w, h in buckets)
    assert nearest_bucket(640, 480, buckets) == (576, 448)
    assert nearest_bucket(480, 640, buckets) == (448, 576)
    assert nearest_bucket(500, 500, buckets) == (512, 512)
    assert make_buckets(64, 64) == [(64, 64)]


def test_batch_plan_is_deterministic_single_bucket_and_split_across_processes():
    from trainer.training.dataset import BatchPlan, Sample

    samples = [Sample(f"{i}.jpg", "c", (64, 64) if i % 3 else (128, 64)) for i in range(20)]
    plan = BatchPlan(samples, 3, seed=1)
    e0, e1 = plan.epoch_batches(0), plan.epoch_batches(1)
    assert e0 == BatchPlan(samples, 3, seed=1).epoch_batches(0) and e0 != e1
    assert sorted(i for b in e0 for i in b) == list(range(20))  # each sample once per epoch
    assert all(len({samples[i].bucket for i in b}) == 1 for b in e0)
    ranks = [BatchPlan(samples, 3, seed=1, world_size=2, rank=r).epoch_batches(0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == plan.batches_per_epoch // 2
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}
    it = plan.iterate(1, 2)  # resume inside epoch 1
    assert [next(it)[2] for _ in range(2)] == e1[2:4]


def test_cache_hits_and_keys(tmp_path, train_captions):
    from trainer.captions.captionset import CaptionRecord
    from trainer.training.dataset import build_samples
    from trainer.training.latent_cache import build_cache
    from trainer.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd15")
    args = (tmp_path, pipe.vae, pipe.text_encoder, pipe.tokenizer)
    samples = build_samples(train_captions, 64)
    first = build_cache(samples, *args, progress=False)
    assert first.stats["latents_encoded"] == 12 and first.stats["text_encoded"] == 12
    again = build_cache(samples, *args, progress=False)
    assert again.stats["latents_encoded"] == 0 and again.stats["text_encoded"] == 0
    lat, emb = again.batch([0, 1])
    lat0, emb0 = first.batch([0, 1])
    assert lat.shape == (2, 4, 8, 8) and emb.shape == (2, 77, 32)
    assert torch.equal(lat, lat0) and torch.equal(emb, emb0)
    # A new resolution re-encodes the images, not the captions; one edited caption is one new embedding.
    assert build_cache(build_samples(train_captions, 128), *args, progress=False).stats["latents_encoded"] == 12
    edited = train_captions.with_records([CaptionRecord(train_captions.records[0].image_path, "a new caption"),
                                          *train_captions.records[1:]])
    stats = build_cache(build_samples(edited, 64), *args, progress=False).stats
    assert stats["text_encoded"] == 1 and stats["latents_encoded"] == 0
    # Different encoder weights are a different key.
    other = build_tiny_pipeline("sd15", seed=1)
    stats = build_cache(samples, tmp_path, other.vae, other.text_encoder, pipe.tokenizer, progress=False).stats
    assert stats["latents_encoded"] == 12 and stats["text_encoded"] == 12


def test_flips_cache_both_orientations(tmp_path, train_captions):
    from trainer.training.dataset import build_samples
    from trainer.training.latent_cache import build_cache
    from trainer.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd15")
    data = build_cache(build_samples(train_captions, 64), tmp_path, pipe.vae, pipe.text_encoder, pipe.tokenizer,
                       flips=True, progress=False)
    assert data.stats["latents_total"] == 24
    plain, _ = data.batch([0], [False])
    flipped, _ = data.batch([0], [True])
    assert not torch.equal(plain, flipped)


@pytest.mark.parametrize("targets, conv, expect, absent", [
    ("attention", 0, ["attn1.to_q", "attn2.to_out.0"], ["proj_in", "ff.net.2", "conv1"]),
    ("kohya", 0, ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "attn2.to_k"], ["conv1"]),
    ("attention", 2, ["resnets.0.conv1", "resnets.0.conv2", "downsamplers.0.conv", "upsamplers.0.conv"], ["proj_in"]),
])
def test_lora_target_sets(targets, conv, expect, absent):
    from trainer.training.config import TrainSection
    from trainer.models.lora import add_lora, lora_state_dict
    from trainer.models.tiny import build_tiny_pipeline

    unet = build_tiny_pipeline("sd15").unet
    add_lora(unet, TrainSection(lora_targets=targets, lora_conv_rank=conv, lora_rank=4))
    keys = list(lora_state_dict(unet))
    for name in expect:
        assert any(f"{name}.lora_A" in k for k in keys), name
    for name in absent:
        assert not any(f"{name}.lora_A" in k for k in keys), name
    if conv:
        a = lora_state_dict(unet)["down_blocks.0.resnets.0.conv1.lora_A.weight"]
        assert a.shape == (2, 32, 3, 3)  # conv rank, original kernel
    assert all(p.requires_grad == ("lora_" in n) for n, p in unet.named_parameters())
