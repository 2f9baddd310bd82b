"""Applying a LoRA to a pipeline: exact in every format, reversible, checked against the base model."""
from __future__ import annotations

import pytest
import torch
from fixtures_sampling import tiny_lora_files, tiny_sd2_lora_file  # noqa: F401

from trainer.models.lora_apply import apply_lora, load_lora, lora_applied
from trainer.models.base import load_base_model



def _weights(pipe):
    return {f"{c}.{k}": v.detach().clone() for c in ("unet", "text_encoder")
            for k, v in getattr(pipe, c).state_dict().items()}


def test_every_format_merges_the_same_weights_and_remove_restores(tiny_sd15_dir, tiny_lora_files):
    pipe = load_base_model(str(tiny_sd15_dir)).pipe
    base = _weights(pipe)
    merged = {}
    for fmt, path in tiny_lora_files.items():
        applied = apply_lora(pipe, path, 0.8)
        merged[fmt] = _weights(pipe)
        assert {c for c, _ in applied.originals} == {"unet", "text_encoder"}
        applied.remove()
        assert all(torch.equal(base[k], v) for k, v in _weights(pipe).items()), fmt
    changed = [k for k in base if not torch.equal(base[k], merged["peft"][k])]
    assert any(k.startswith("unet.") and "to_q" in k for k in changed)
    assert any(k.startswith("text_encoder.") and "q_proj" in k for k in changed)
    for fmt in ("diffusers", "webui"):
        bad = [k for k in base if not torch.equal(merged["peft"][k], merged[fmt][k])]
        assert not bad, f"{fmt}: {bad[:3]}"


def test_scale_zero_leaves_the_model_bit_identical(tiny_sd15_dir, tiny_lora_files):
    pipe = load_base_model(str(tiny_sd15_dir)).pipe
    base = _weights(pipe)
    with lora_applied(pipe, tiny_lora_files["webui"], 0.0):
        assert all(torch.equal(base[k], v) for k, v in _weights(pipe).items())


def test_same_outputs_as_diffusers_own_lora_loader(tiny_sd15_dir, tiny_lora_files):
    """A third-party loader (diffusers + PEFT, unmerged) gives the same UNet and text-encoder outputs.

    The UNets run in float64: a random-weight UNet amplifies fp32 rounding (merged W + BA vs unmerged Wx + B(Ax))
    from 1e-7 in its first layer to 4e-5 at its output at some library versions, which would hide a real
    difference of that size; in float64 the two agree to 1e-12, so any key or scale error shows."""
    ours = load_base_model(str(tiny_sd15_dir)).pipe
    theirs = load_base_model(str(tiny_sd15_dir)).pipe
    base = load_base_model(str(tiny_sd15_dir)).pipe
    for pipe in (ours, theirs, base):
        pipe.unet.to(torch.float64)
    apply_lora(ours, tiny_lora_files["webui"], 1.0)
    theirs.load_lora_weights(str(tiny_lora_files["diffusers"].parent), weight_name=tiny_lora_files["diffusers"].name)
    ids = ours.tokenizer(["a cat sitting on a mat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 500])
    with torch.no_grad():
        e_ours, e_theirs = ours.text_encoder(ids)[0], theirs.text_encoder(ids)[0]
        assert not torch.allclose(e_ours, base.text_encoder(ids)[0], atol=1e-3)  # the LoRA does something
        torch.testing.assert_close(e_ours, e_theirs, rtol=1e-4, atol=1e-5)
        ctx, x = e_ours.double().expand(2, -1, -1), x.double()
        out_ours = ours.unet(x, t, ctx).sample
        assert (out_ours - base.unet(x, t, ctx).sample).abs().max() > 0.1  # the UNet LoRA does something
        torch.testing.assert_close(out_ours, theirs.unet(x, t, ctx).sample, rtol=1e-9, atol=1e-10)


def test_lora_for_another_base_names_the_shapes(tiny_sd15_dir, tiny_sd2_lora_file):
    pipe = load_base_model(str(tiny_sd15_dir)).pipe
    base = _weights(pipe)
    with pytest.raises(ValueError) as err:
        apply_lora(pipe, tiny_sd2_lora_file)
    msg = str(err.value)
    assert "does not fit" in msg and str(tiny_sd2_lora_file) in msg
    assert "shape mismatch: down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k: LoRA 48->32" in msg
    assert all(torch.equal(base[k], v) for k, v in _weights(pipe).items()), "nothing may change on error"


def test_missing_lora_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_lora(tmp_path / "nope.safetensors")
