"""Single-file checkpoints: diffusers -> LDM layout and back, offline, bit-exact."""
from __future__ import annotations

import pytest
import torch
from fixtures_sampling import tiny_sd2_single_file, tiny_sd15_single_file  # noqa: F401
from safetensors import safe_open
from safetensors.torch import save_file

from trainer.models.base import load_base_model
from trainer.models.single_file import (
    heap_frozen,
    load_single_file,
    pipeline_to_ldm,
    read_checkpoint_shapes,
    save_single_file,
    side_config_dir,
)



def _assert_same_weights(a, b):
    for name in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert set(sa) == set(sb), name
        bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not bad, f"{name}: {bad[:5]}"


@pytest.mark.parametrize("variant", ["sd15", "sd2"])
def test_round_trip_is_bit_exact(variant, request, tmp_path):
    src = load_base_model(str(request.getfixturevalue(f"tiny_{variant}_dir"))).pipe
    path = save_single_file(src, tmp_path / "m.safetensors", save_config=True)
    pipe, family, pred = load_single_file(path)
    assert family == ("sd2" if variant == "sd2" else "sd1")
    assert pred == ("v_prediction" if variant == "sd2" else "epsilon")
    _assert_same_weights(src, pipe)


def test_ldm_key_names_are_the_original_ones(tiny_sd15_dir, tiny_sd2_dir):
    # Names as in v1-5-pruned.safetensors / v2-1_768-ema-pruned.safetensors (same block layout as the tiny model).
    sd1 = pipeline_to_ldm(load_base_model(str(tiny_sd15_dir)).pipe)
    for key in (
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.input_blocks.7.0.skip_connection.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",  # up block 0 has no attention: slot 1
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
        "model.diffusion_model.time_embed.2.weight",
        "model.diffusion_model.out.2.bias",
        "first_stage_model.encoder.down.0.downsample.conv.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.up.0.block.1.conv2.weight",
        "first_stage_model.encoder.mid.attn_1.proj_out.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    ):
        assert key in sd1, key
    assert sd1["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # LDM VAE attention is 1x1 conv
    assert sd1["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 4  # SD1: conv proj_in

    sd2 = pipeline_to_ldm(load_base_model(str(tiny_sd2_dir)).pipe)
    assert sd2["model.diffusion_model.input_blocks.1.1.proj_in.weight"].ndim == 2  # SD2: linear proj_in
    width = 32
    assert sd2["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"].shape == (3 * width, width)
    assert "cond_stage_model.model.positional_embedding" in sd2
    assert not any(k.startswith("cond_stage_model.transformer.") for k in sd2)


def test_ckpt_loads_through_weights_only(tiny_sd15_dir, tmp_path):
    src = load_base_model(str(tiny_sd15_dir)).pipe
    path = save_single_file(src, tmp_path / "m.safetensors", save_config=True)
    with safe_open(str(path), framework="pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": sd, "global_step": 1}, ckpt)  # the CompVis layout
    side_config_dir(path).rename(side_config_dir(ckpt))
    pipe, family, _ = load_single_file(ckpt)
    assert family == "sd1"
    _assert_same_weights(src, pipe)


class _Payload:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_ckpt_with_arbitrary_pickle_is_refused(tmp_path):
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": _Payload()}}, bad)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_single_file(bad)


def test_tiny_file_without_config_names_the_fix(tiny_sd15_single_file, tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(tiny_sd15_single_file.read_bytes())  # no side config next to it
    with pytest.raises(ValueError, match=r"cross-attention 32 .*\(320 / 768\).*config="):
        load_single_file(lone)


def test_explicit_config_folder_and_prediction_override(tiny_sd15_single_file, tiny_sd15_dir, tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(tiny_sd15_single_file.read_bytes())
    pipe, family, pred = load_single_file(lone, config=tiny_sd15_dir, prediction_type="v_prediction")
    assert (family, pred) == ("sd1", "v_prediction")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    _assert_same_weights(load_base_model(str(tiny_sd15_dir)).pipe, pipe)


def test_not_a_base_model_is_a_clear_error(tmp_path):
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)}, str(lora))
    with pytest.raises(ValueError, match="not an SD1.x/SD2.x/SDXL checkpoint"):
        load_single_file(lora)


def test_shapes_are_read_without_loading(tiny_sd2_single_file):
    shapes = read_checkpoint_shapes(tiny_sd2_single_file)
    assert shapes["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] == (32, 32)


def test_sd2_yaml_side_file_decides_parameterization(tmp_path):
    from trainer.models.single_file import _sd2_predicts_v

    ckpt = tmp_path / "v2-1_768.safetensors"
    assert _sd2_predicts_v(ckpt) is None
    ckpt.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert _sd2_predicts_v(ckpt) is True
    ckpt.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert _sd2_predicts_v(ckpt) is False


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_full_size_layout_round_trips_through_diffusers_converters(family):
    """The real SD1.5 / SD2.1 sizes (shipped configs), on the meta device: our diffusers -> LDM tables,
    then diffusers' own LDM -> diffusers converters, give back every key with its shape."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModel

    from trainer.models.single_file import SHIPPED_CONFIGS, clip_to_ldm, openclip_to_ldm, unet_to_ldm, vae_to_ldm

    cfg_dir = SHIPPED_CONFIGS[family]
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg_dir / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg_dir / "vae"))
        te = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg_dir / "text_encoder"))
    for model, to_ldm, back in (
        (unet, lambda sd: unet_to_ldm(sd, unet.config), lambda ldm: sfu.convert_ldm_unet_checkpoint(ldm, unet.config)),
        (vae, lambda sd: vae_to_ldm(sd, vae.config), lambda ldm: sfu.convert_ldm_vae_checkpoint(ldm, vae.config)),
    ):
        sd = model.state_dict()
        again = back(to_ldm(sd))
        assert {k: tuple(v.shape) for k, v in again.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    sd = te.state_dict()
    if family == "sd1":
        again = sfu.convert_ldm_clip_checkpoint(clip_to_ldm(sd))
    else:
        ldm = openclip_to_ldm(sd)
        assert len({k.split(".")[4] for k in ldm if ".resblocks." in k}) == 23  # penultimate-layer tower
        again = sfu.convert_open_clip_checkpoint(te, ldm)
    again = {k.removeprefix("text_model."): tuple(v.shape) for k, v in again.items() if "position_ids" not in k}
    assert again == {k.removeprefix("text_model."): tuple(v.shape) for k, v in sd.items() if "position_ids" not in k}


def test_sd2_weight_test_matches_comfyui(tmp_path):
    from trainer.models.single_file import V_PROBE_KEY, _sd2_weights_look_v

    g = torch.Generator().manual_seed(0)
    save_file({V_PROBE_KEY: torch.randn(320, generator=g) * 0.2}, str(tmp_path / "v.safetensors"))
    save_file({V_PROBE_KEY: torch.randn(320, generator=g) * 0.02}, str(tmp_path / "eps.safetensors"))
    torch.save({"state_dict": {V_PROBE_KEY: torch.randn(320, generator=g) * 0.2}}, tmp_path / "v.ckpt")
    assert _sd2_weights_look_v(tmp_path / "v.safetensors") is True
    assert _sd2_weights_look_v(tmp_path / "eps.safetensors") is False
    assert _sd2_weights_look_v(tmp_path / "v.ckpt") is True


def test_loading_freezes_the_heap_only_while_it_loads(tiny_sd15_single_file):
    """diffusers 0.34 collects garbage once per tensor; the pre-existing heap is frozen during the load only."""
    import gc

    before = gc.get_freeze_count()
    with heap_frozen():
        assert gc.get_freeze_count() > 0  # what existed before the load is out of the collections
    assert gc.get_freeze_count() == before == 0
    load_base_model(str(tiny_sd15_single_file))
    assert gc.get_freeze_count() == 0  # nothing stays frozen after a load

    gc.freeze()  # a host that froze its own heap (forking servers do) keeps it frozen
    try:
        host_frozen = gc.get_freeze_count()
        with heap_frozen():
            pass
        # not unfrozen (that empties the permanent generation) and not frozen again (that grows it); the count
        # may shrink by the few frozen objects freed meanwhile, so equality would be a race with the allocator
        assert 0 < gc.get_freeze_count() <= host_frozen
    finally:
        gc.unfreeze()
