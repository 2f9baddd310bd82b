"""PEFT-trained LoRA (tiny SD1.5 UNet + text encoder, rank 4, lora_alpha 8) through webui/diffusers/PEFT formats,
checked against real clients: diffusers `load_lora_weights` and PEFT injection give the PEFT model's outputs."""
from __future__ import annotations

import copy
import functools

import pytest
import torch

import convert

pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
UNET_MIXED = dict(rank_pattern={"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": 2},
                  alpha_pattern={"attn2.to_out.0": 3, "up_blocks.3.attentions.2.proj_out": 16})
TE_MIXED = dict(rank_pattern={"fc1": 8}, alpha_pattern={"k_proj": 1.5})


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(2, 4, 8, 8, generator=g),
        timestep=torch.tensor([10, 500]),
        encoder_hidden_states=torch.randn(2, 77, 32, generator=g),
        input_ids=torch.randint(0, 49407, (2, 77), generator=g),
    )


@torch.no_grad()
def _outputs(pipe, x):
    unet = pipe.unet(x["sample"], x["timestep"], encoder_hidden_states=x["encoder_hidden_states"]).sample
    te = pipe.text_encoder(x["input_ids"]).last_hidden_state
    return unet, te


def _peft_pipe(variant: str, mixed: bool):
    """A tiny pipeline with random (non-zero) PEFT LoRAs on the UNet and the text encoder.

    PEFT's own `inject_adapter_in_model`, not `add_adapter`: transformers' `add_adapter` gates on a PEFT
    version of its own choosing (5.24 demands an unreleased 0.22), and PEFT is what is under test here."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    pipe = _fresh(variant)
    torch.manual_seed(1)
    ucfg = LoraConfig(r=4, lora_alpha=8, target_modules=UNET_TARGETS, init_lora_weights=False,
                      **(UNET_MIXED if mixed else {}))
    tcfg = LoraConfig(r=4, lora_alpha=8, target_modules=TE_TARGETS, init_lora_weights=False,
                      **(TE_MIXED if mixed else {}))
    inject_adapter_in_model(ucfg, pipe.unet)
    inject_adapter_in_model(tcfg, pipe.text_encoder)
    unet_lora = convert.from_peft_state_dict(
        get_peft_model_state_dict(pipe.unet), rank=ucfg.r, alpha=ucfg.lora_alpha, rank_pattern=ucfg.rank_pattern,
        alpha_pattern=ucfg.alpha_pattern)
    te_lora = convert.from_peft_state_dict(
        get_peft_model_state_dict(pipe.text_encoder), rank=tcfg.r, alpha=tcfg.lora_alpha,
        rank_pattern=tcfg.rank_pattern, alpha_pattern=tcfg.alpha_pattern, component="text_encoder")
    lora = convert.LoraFile({**unet_lora.modules, **te_lora.modules}, {"ss_caption_filter": "adverbs"}, "peft",
                            unet_lora.family)
    return pipe, lora


@pytest.fixture(scope="module")
def uniform():
    pipe, lora = _peft_pipe("sd15", mixed=False)
    x = _inputs()
    return lora, x, _outputs(pipe, x)


@pytest.fixture(scope="module")
def mixed():
    pipe, lora = _peft_pipe("sd15", mixed=True)
    x = _inputs()
    return lora, x, _outputs(pipe, x)


@functools.cache
def _base(variant):
    from trainer.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline(variant)


def _fresh(variant="sd15"):
    """The same random base weights every time (a copy is much faster than building anew)."""
    return copy.deepcopy(_base(variant))


def _assert_same(got, want):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_peft_state_dict_reads_every_module_with_its_scale(uniform, mixed):
    lora = uniform[0]
    assert len(lora.component("unet")) == 16 * 12 and len(lora.component("text_encoder")) == 2 * 6
    assert {m.scale for m in lora.modules.values()} == {2.0}
    mods = mixed[0].modules
    q = mods["unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"]
    assert (q.rank, q.scale) == (2, 4.0)
    assert mods["unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0"].scale == 0.75
    assert mods["text_encoder.text_model.encoder.layers.1.mlp.fc1"].scale == 1.0  # rank 8, alpha 8
    assert mods["text_encoder.text_model.encoder.layers.0.self_attn.k_proj"].alpha == 1.5


def test_webui_file_loads_in_diffusers_with_the_trained_strength(uniform, tmp_path):
    lora, x, want = uniform
    path = convert.save_webui(lora, tmp_path / "lora.safetensors")
    pipe = _fresh()
    base = _outputs(pipe, x)
    pipe.load_lora_weights(str(tmp_path), weight_name="lora.safetensors")
    got = _outputs(pipe, x)
    assert not torch.allclose(base[0], want[0], atol=1e-3), "the LoRA must change the UNet output for this test to mean anything"
    _assert_same(got, want)
    assert convert.verify(lora, path).ok


def test_diffusers_own_kohya_export_is_off_where_ours_is_exact(uniform, tmp_path):
    """Control: diffusers' `convert_state_dict_to_kohya` writes alpha = rank, halving this r4/α8 LoRA."""
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    lora, _, _ = uniform
    sd, _ = convert.to_diffusers_state_dict(lora)
    save_file(convert_state_dict_to_kohya(sd), tmp_path / "theirs.safetensors")
    theirs = convert.load_any(tmp_path / "theirs.safetensors")  # lora_te1_ on SD1 read as the one text encoder
    assert set(theirs.modules) == set(lora.modules)
    report = convert.verify(lora, theirs)
    assert not report.ok and report.max_rel == pytest.approx(0.5, rel=1e-6)


def test_mixed_ranks_and_alphas_load_exactly_through_peft_and_diffusers(mixed, tmp_path):
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    lora, x, want = mixed
    webui = convert.save_webui(lora, tmp_path / "mixed.safetensors")
    back = convert.load_any(webui)
    assert convert.verify(lora, back).ok
    # PEFT injection from the webui file
    pipe = _fresh()
    # transformers < 5 nests the encoder under `text_model.`; 5 flattened it
    te_nested = hasattr(pipe.text_encoder, "text_model")
    for model, comp, tm in ((pipe.unet, "unet", True), (pipe.text_encoder, "text_encoder", te_nested)):
        sd, cfg = convert.to_peft_state_dict(back, comp, text_model_level=tm)
        inject_adapter_in_model(LoraConfig(**cfg), model)
        result = set_peft_model_state_dict(model, sd)
        assert not result.unexpected_keys
    _assert_same(_outputs(pipe, x), want)
    # diffusers file with lora_adapter_metadata: exact per-module alphas, also folded
    for fold in (False, True):
        out = convert.save_diffusers(back, tmp_path / f"diffusers-{fold}", fold_alpha=fold)
        pipe = _fresh()
        pipe.load_lora_weights(str(out.parent), weight_name=out.name)  # diffusers < 0.35 needs the name offline
        _assert_same(_outputs(pipe, x), want)


def test_round_trips_keep_delta_keys_and_alphas(mixed, tmp_path):
    lora = mixed[0]
    w1 = convert.to_webui_state_dict(lora)
    peft_dir = convert.save_peft(convert.load_any(convert.save_webui(lora, tmp_path / "a.safetensors")), tmp_path / "peft")
    again = convert.load_any(peft_dir)
    assert again.format == "peft" and convert.verify(lora, again, rtol=0, atol=0).ok
    w2 = convert.to_webui_state_dict(again)
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
        if k.endswith(".alpha"):
            assert w2[k].dtype == torch.float32 and w2[k].dim() == 0
    # metadata (e.g. the trainer's caption-filter settings) survives webui -> PEFT -> webui
    final = convert.save_webui(again, tmp_path / "b.safetensors")
    assert convert.load_any(final).metadata["ss_caption_filter"] == "adverbs"
    # folded PEFT: different numbers in the file, same ΔW
    folded = convert.load_any(convert.save_peft(lora, tmp_path / "folded", fold_alpha=True))
    assert {m.alpha / m.rank for m in folded.modules.values()} == {1.0}
    assert convert.verify(lora, folded, rtol=1e-6).ok


def test_rslora_scale_is_kept(tmp_path):
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = _fresh()
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], init_lora_weights=False, use_rslora=True)
    pipe.unet.add_adapter(cfg)
    lora = convert.from_peft_state_dict(get_peft_model_state_dict(pipe.unet), rank=4, alpha=8, use_rslora=True)
    assert {m.scale for m in lora.modules.values()} == {4.0}  # lora_alpha / sqrt(r) = 8 / 2
    sd = convert.to_webui_state_dict(lora)
    assert {float(v) for k, v in sd.items() if k.endswith(".alpha")} == {16.0}


def test_sd2_linear_proj_and_family(tmp_path):
    from peft import LoraConfig, get_peft_model_state_dict

    pipe = _fresh("sd2")
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=UNET_TARGETS, init_lora_weights=False))
    x = _inputs()
    want = _outputs(pipe, x)
    lora = convert.from_peft_state_dict(get_peft_model_state_dict(pipe.unet), rank=4, alpha=8)
    assert lora.family == "sd2"
    assert lora.modules["unet.down_blocks.0.attentions.0.proj_in"].down.dim() == 2
    path = convert.save_webui(lora, tmp_path / "sd2.safetensors", metadata={"ss_v_parameterization": "True"})
    meta = convert.load_any(path).metadata
    assert meta["ss_base_model_version"] == "sd_v2_v" and meta["ss_v2"] == "True"
    fresh = _fresh("sd2")
    fresh.load_lora_weights(str(tmp_path), weight_name="sd2.safetensors")
    _assert_same(_outputs(fresh, x)[:1], want[:1])


def test_check_against_model_names_every_misfit():
    sd1 = _base("sd15")
    shapes = {k: tuple(v.shape) for k, v in sd1.unet.state_dict().items()}
    a = torch.zeros(4, 48)
    lora = convert.LoraFile({
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k": convert.LoraModule(a, torch.zeros(32, 4), 4.0),
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v": convert.LoraModule(torch.zeros(4, 32), torch.zeros(32, 4), 4.0),
        "unet.down_blocks.3.attentions.0.proj_in": convert.LoraModule(torch.zeros(4, 64), torch.zeros(64, 4), 4.0),
    })
    with pytest.raises(ValueError) as e:
        convert.check_against_model(lora, shapes)
    msg = str(e.value)
    assert "attn2.to_k: LoRA 48->32" in msg and "not in the model: down_blocks.3.attentions.0.proj_in" in msg
    assert "attn2.to_v" not in msg
    # SD1 1x1-conv proj_in accepts linear-shaped factors; fit_to_model reshapes them for PEFT
    ok = convert.LoraFile({"unet.down_blocks.0.attentions.0.proj_in": convert.LoraModule(torch.ones(4, 32), torch.ones(32, 4), 4.0)})
    fitted = convert.fit_to_model(ok, shapes)
    assert fitted.modules["unet.down_blocks.0.attentions.0.proj_in"].down.shape == (4, 32, 1, 1)
    te_shapes = {k: tuple(v.shape) for k, v in sd1.text_encoder.state_dict().items()}
    te = convert.LoraFile({"text_encoder.text_model.encoder.layers.0.mlp.fc1": convert.LoraModule(torch.ones(4, 32), torch.ones(64, 4), 4.0)})
    convert.check_against_model(te, te_shapes, component="text_encoder")  # transformers-5 names, no text_model.
