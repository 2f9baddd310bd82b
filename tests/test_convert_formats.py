"""Key table, input formats (kohya diffusers/LDM spelling, lora_te1_, LoCon, HCP, old diffusers, alpha 0/missing)
and every bad input. Synthetic LoRAs: only names and shapes matter here, no model is needed."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import convert
from convert import keymap

Q = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
OUT0 = "unet.up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_out.0"
FF = "unet.mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj"
PROJ = "unet.up_blocks.3.attentions.2.proj_out"
TE_Q = "text_encoder.text_model.encoder.layers.1.self_attn.q_proj"
TE_FC2 = "text_encoder.text_model.encoder.layers.0.mlp.fc2"
CONV1 = "unet.down_blocks.0.resnets.1.conv1"
SHORTCUT = "unet.up_blocks.0.resnets.2.conv_shortcut"
DOWNSAMPLE = "unet.down_blocks.2.downsamplers.0.conv"
UPSAMPLE = "unet.up_blocks.0.upsamplers.0.conv"


def module(rank=4, alpha=8.0, conv=False, seed=0, out=32, inp=32):
    g = torch.Generator().manual_seed(seed)
    if conv:
        return convert.LoraModule(torch.randn(rank, inp, 3, 3, generator=g), torch.randn(out, rank, 1, 1, generator=g), alpha)
    return convert.LoraModule(torch.randn(rank, inp, generator=g), torch.randn(out, rank, generator=g), alpha)


def sample_lora(conv=True) -> convert.LoraFile:
    mods = {Q: module(4, 8.0, seed=1), OUT0: module(2, 3.0, seed=2), FF: module(8, 8.0, seed=3, out=64),
            PROJ: module(4, 1.0, seed=4), TE_Q: module(4, 8.0, seed=5), TE_FC2: module(4, 0.5, seed=6, inp=64)}
    if conv:
        mods |= {CONV1: module(2, 1.0, conv=True, seed=7), DOWNSAMPLE: module(2, 2.0, conv=True, seed=8),
                 UPSAMPLE: module(2, 2.0, conv=True, seed=9), SHORTCUT: module(4, 4.0, seed=10)}
    return convert.LoraFile(mods, {"ss_training_comment": "adverbs removed"}, family="sd1")


def kohya_file(tmp_path, tensors, name="k.safetensors", metadata=None):
    path = tmp_path / name
    save_file({k: v.clone() for k, v in tensors.items()}, path, metadata=metadata)
    return path


# ------------------------------------------------------------------------------------------- key table

def test_table_has_sd1_kohya_counts_and_is_symmetric():
    rows = keymap.unet_rows(keymap.SD_LAYOUT)
    assert sum(".transformer_blocks." in p or ".proj_" in p for p, _ in rows) == 16 * 12  # kohya's 192 UNet modules
    for path, ldm in rows:
        for ldm_names in (False, True):
            name = keymap.kohya_name("unet." + path, "sd1", ldm_names)
            assert keymap.canonical_from_kohya(name)[0] == "unet." + path
    for path in keymap.te_paths():
        assert keymap.canonical_from_kohya(keymap.kohya_name("text_encoder." + path, "sd1"))[0] == "text_encoder." + path


@pytest.mark.parametrize("name, key", [
    ("lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_0_proj", FF),
    ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", Q),
    ("lora_unet_output_blocks_7_1_transformer_blocks_0_attn2_to_out_0", OUT0),
    ("lora_unet_output_blocks_11_1_proj_out", PROJ),
    ("lora_unet_input_blocks_2_0_in_layers_2", CONV1),
    ("lora_unet_input_blocks_9_0_op", DOWNSAMPLE),
    ("lora_unet_output_blocks_2_1_conv", UPSAMPLE),  # SD1 up block 0 has no attention: `.1.conv`
    ("lora_unet_output_blocks_2_0_skip_connection", SHORTCUT),
    ("lora_te_text_model_encoder_layers_1_self_attn_q_proj", TE_Q),
    ("lora_te1_text_model_encoder_layers_1_self_attn_q_proj", TE_Q),
])
def test_kohya_names_resolve_without_splitting_on_underscores(name, key):
    assert keymap.canonical_from_kohya(name)[0] == key


def test_misspelled_names_are_not_guessed():
    assert keymap.canonical_from_kohya("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out") is None
    assert keymap.canonical_from_kohya("lora_unet_down_blocks_3_attentions_0_proj_in") is None  # SD1 block 3 has none


# ------------------------------------------------------------------------------------------- webui in/out

def test_webui_round_trip_both_spellings_with_locon(tmp_path):
    lora = sample_lora()
    for ldm in (False, True):
        path = convert.save_webui(lora, tmp_path / f"ldm{ldm}.safetensors", ldm_names=ldm)
        back = convert.load_any(path)
        assert back.format == ("webui-ldm" if ldm else "webui")
        assert set(back.modules) == set(lora.modules)
        assert convert.verify(lora, back, rtol=0, atol=0).ok
        assert back.metadata["ss_training_comment"] == "adverbs removed"
        assert json.loads(back.metadata["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "2"}  # most common of 1, 2, 2
    sd = convert.to_webui_state_dict(lora, ldm_names=True)
    assert "lora_unet_input_blocks_2_0_in_layers_2.lora_down.weight" in sd
    assert "lora_unet_output_blocks_7_1_transformer_blocks_0_attn2_to_out_0.alpha" in sd
    assert "lora_te_text_model_encoder_layers_1_self_attn_q_proj.lora_up.weight" in sd


def test_locon_delta_equals_the_two_convolutions():
    m = module(3, 6.0, conv=True, seed=11)
    x = torch.randn(1, 32, 8, 8)
    two_convs = m.scale * F.conv2d(F.conv2d(x, m.down, padding=1), m.up)
    torch.testing.assert_close(F.conv2d(x, m.delta(), padding=1), two_convs, rtol=1e-4, atol=1e-4)


def test_alphas_are_fp32_scalars_and_dtype_option(tmp_path):
    lora = sample_lora(conv=False)
    lora.modules[Q].alpha = 0.1  # bf16 would store 0.10009765625
    path = convert.save_webui(lora, tmp_path / "bf16.safetensors", dtype="bf16")
    back = convert.load_any(path)
    assert back.modules[Q].alpha == pytest.approx(0.1, abs=1e-8) and back.modules[Q].down.dtype == torch.bfloat16
    assert not convert.verify(lora, back).ok  # bf16 factors really are different numbers
    assert convert.verify(lora, back, rtol=2e-2).ok


def test_kohya_alpha_variants(tmp_path):
    m = module(4, 8.0)
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    base = {f"{name}.lora_down.weight": m.down, f"{name}.lora_up.weight": m.up}
    for alpha, want in ((torch.tensor(8, dtype=torch.int64), 8.0), (torch.tensor([2.0], dtype=torch.float16), 2.0)):
        assert convert.load_any(kohya_file(tmp_path, {**base, f"{name}.alpha": alpha})).modules[Q].alpha == want
    with pytest.warns(UserWarning, match="alpha 0"):
        zero = convert.load_any(kohya_file(tmp_path, {**base, f"{name}.alpha": torch.tensor(0.0)}))
    assert zero.modules[Q].scale == 1.0
    with pytest.warns(UserWarning, match="no alpha"):
        missing = convert.load_any(kohya_file(tmp_path, base))
    assert missing.modules[Q].scale == 1.0
    # never write 0: a PEFT lora_alpha of 0 (module off) becomes zero factors with alpha = rank
    off = convert.LoraFile({Q: convert.LoraModule(m.down, m.up, 0.0)})
    sd = convert.to_webui_state_dict(off)
    assert float(sd[f"{name}.alpha"]) == 4.0 and not sd[f"{name}.lora_up.weight"].any()


def test_lora_te1_on_sd1_and_te_conflict(tmp_path):
    lora = sample_lora(conv=False)
    sd = {k.replace("lora_te_", "lora_te1_"): v for k, v in convert.to_webui_state_dict(lora).items()}
    back = convert.load_any(kohya_file(tmp_path, sd))
    assert convert.verify(lora, back).ok
    assert any(k.startswith("lora_te_") for k in convert.to_webui_state_dict(back))
    both = dict(sd, **{k.replace("lora_te1_", "lora_te_"): v for k, v in sd.items() if k.startswith("lora_te1_")})
    with pytest.raises(convert.LoraFormatError, match="keep one"):
        convert.load_any(kohya_file(tmp_path, both, "both.safetensors"))


# ------------------------------------------------------------------------------------------- other inputs

def _hcp_tensors(lora, prefix=""):
    out = {}
    for key, m in lora.modules.items():
        path = key.split(".", 1)[1]
        out[f"{prefix}{path}.___.layer.W_down"] = m.down
        out[f"{prefix}{path}.___.layer.W_up"] = m.up
        out[f"{prefix}{path}.___.alpha"] = torch.tensor(m.scale)  # HCP stores the scale itself
    return out


def test_hcp_safetensors_and_pickle(tmp_path):
    lora = sample_lora()
    unet = convert.LoraFile({k: v for k, v in lora.modules.items() if k.startswith("unet.")})
    te = convert.LoraFile({k: v for k, v in lora.modules.items() if k.startswith("text_encoder.")})
    a = convert.load_any(kohya_file(tmp_path, _hcp_tensors(unet), "unet-hcp.safetensors"))
    torch.save({"lora": _hcp_tensors(te)}, tmp_path / "text_encoder-hcp.pt")
    b = convert.load_any(tmp_path / "text_encoder-hcp.pt")
    assert a.format == b.format == "hcp"
    merged = convert.LoraFile({**a.modules, **b.modules})
    assert convert.verify(lora, merged, rtol=1e-6).ok
    assert merged.modules[OUT0].alpha == pytest.approx(3.0)


def test_old_diffusers_attention_processor_format(tmp_path):
    lora = sample_lora(conv=False)
    old_names = {
        Q: "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora",
        OUT0: "unet.up_blocks.2.attentions.1.transformer_blocks.0.attn2.processor.to_out_lora",
        FF: "unet.mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.lora",
        PROJ: "up_blocks.3.attentions.2.proj_out.lora",  # no `unet.` prefix: older files
        TE_Q: "text_encoder.text_model.encoder.layers.1.self_attn.to_q_lora",
        TE_FC2: "text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_linear_layer",
    }
    sd = {}
    for key, old in old_names.items():
        m = lora.modules[key]
        sd |= {f"{old}.down.weight": m.down, f"{old}.up.weight": m.up, f"{old}.down.weight.alpha": torch.tensor(m.alpha)}
    back = convert.load_any(kohya_file(tmp_path, sd))
    assert back.format == "diffusers-old" and convert.verify(lora, back).ok


def test_diffusers_file_without_metadata_is_scale_one(tmp_path):
    lora = sample_lora(conv=False)
    sd, _ = convert.to_diffusers_state_dict(lora)
    kohya_file(tmp_path, sd, "pytorch_lora_weights.safetensors")
    with pytest.warns(UserWarning, match="lora_adapter_metadata"):
        back = convert.load_any(tmp_path)
    assert {m.scale for m in back.modules.values()} == {1.0}


def test_sdxl_file_is_detected_and_keeps_te1_te2(tmp_path):
    m = module()
    sd = {}
    for name in ("lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q", "lora_te1_text_model_encoder_layers_0_mlp_fc1",
                 "lora_te2_text_model_encoder_layers_31_mlp_fc1"):
        sd |= {f"{name}.lora_down.weight": m.down, f"{name}.lora_up.weight": m.up, f"{name}.alpha": torch.tensor(8.0)}
    lora = convert.load_any(kohya_file(tmp_path, sd))
    assert lora.family == "sdxl" and "unet.down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q" in lora.modules
    assert set(convert.to_webui_state_dict(lora)) == set(sd)
    info = convert.inspect_lora(lora)
    assert info["family"] == "SDXL" and info["modules"] == {"unet": 1, "text_encoder": 2}


# ------------------------------------------------------------------------------------------- bad input

def _webui(tmp_path, lora=None, name="ok.safetensors", **extra):
    return kohya_file(tmp_path, {**convert.to_webui_state_dict(lora or sample_lora()), **extra}, name)


def test_unknown_keys_are_listed_or_dropped_with_a_warning(tmp_path):
    bad = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_out"
    path = _webui(tmp_path, **{f"{bad}.lora_down.weight": torch.zeros(4, 32), f"{bad}.lora_up.weight": torch.zeros(32, 4)})
    with pytest.raises(convert.LoraFormatError) as e:
        convert.load_any(path)
    assert str(path) in str(e.value) and f"{bad}.lora_down.weight" in str(e.value) and "--allow-unknown" in str(e.value)
    with pytest.warns(UserWarning, match="attn1_to_out.lora_up.weight"):
        lora = convert.load_any(path, allow_unknown=True)
    assert len(lora.modules) == len(sample_lora().modules)
    foreign = _webui(tmp_path, name="emb.safetensors", **{"bundle_emb.x.string_to_param.*": torch.zeros(1, 32)})
    with pytest.raises(convert.LoraFormatError, match="foreign keys"):
        convert.load_any(foreign)


@pytest.mark.parametrize("case, match", [
    ("shape", "does not fit down"),
    ("conv_down_linear_up", r"attn1\.to_q: down \(4, 32, 3, 3\) is 4-D but up \(32, 4\) is 2-D"),
    ("lonely", "only one of down/up"),
    ("alpha_shape", "expected a scalar"),
    ("lycoris", "LyCORIS/DoRA"),
    ("checkpoint", "full model checkpoint"),
    ("unknown", "unknown LoRA format"),
    ("no_tensors", "holds no tensors"),
])
def test_bad_files_fail_with_one_clear_line(tmp_path, case, match):
    n = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {
        "shape": {f"{n}.lora_down.weight": torch.zeros(4, 32), f"{n}.lora_up.weight": torch.zeros(32, 8)},
        "conv_down_linear_up": {f"{n}.lora_down.weight": torch.zeros(4, 32, 3, 3), f"{n}.lora_up.weight": torch.zeros(32, 4)},
        "lonely": {f"{n}.lora_down.weight": torch.zeros(4, 32)},
        "alpha_shape": {f"{n}.lora_down.weight": torch.zeros(4, 32), f"{n}.lora_up.weight": torch.zeros(32, 4),
                        f"{n}.alpha": torch.zeros(4)},
        "lycoris": {f"{n}.lora_mid.weight": torch.zeros(4, 4, 3, 3), f"{n}.lora_down.weight": torch.zeros(4, 32)},
        "checkpoint": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4), "cond_stage_model.x": torch.zeros(1)},
        "unknown": {"lora_weights.foo": torch.zeros(4)},
        "no_tensors": {},
    }[case]
    path = kohya_file(tmp_path, tensors, f"{case}.safetensors")
    with pytest.raises(convert.LoraFormatError, match=match) as e:
        convert.load_any(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_empty_truncated_and_unsafe_files(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(convert.LoraFormatError, match="empty"):
        convert.load_any(empty)
    good = _webui(tmp_path)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(convert.LoraFormatError, match="truncated or corrupt"):
        convert.load_any(cut)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"lora": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(convert.LoraFormatError, match="weights_only"):
        convert.load_any(tmp_path / "evil.pt")
    with pytest.raises(convert.LoraFormatError, match="no such file"):
        convert.load_any(tmp_path / "missing.safetensors")


def test_outputs_are_never_clobbered(tmp_path):
    src = _webui(tmp_path)
    lora = convert.load_any(src)
    with pytest.raises(FileExistsError, match="input"):
        convert.save_webui(lora, src, overwrite=True)
    out = convert.save_webui(lora, tmp_path / "out.safetensors")
    with pytest.raises(FileExistsError, match="--force"):
        convert.save_webui(lora, out)
    convert.save_webui(lora, out, overwrite=True)
    peft_dir = convert.save_peft(lora, tmp_path / "peft")
    with pytest.raises(FileExistsError):
        convert.save_peft(lora, peft_dir)
    convert.save_peft(lora, peft_dir, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_peft_dir_config_disagreeing_with_weights(tmp_path):
    lora = convert.LoraFile({Q: module(4, 8.0)})
    d = convert.save_peft(lora, tmp_path / "peft")
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["r"] = 8
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(convert.LoraFormatError, match="rank 8 but its weights have rank 4"):
        convert.load_any(d)
    (d / "adapter_model.safetensors").unlink()
    with pytest.raises(convert.LoraFormatError, match="no adapter_model"):
        convert.load_any(d)
    with pytest.raises(convert.LoraFormatError, match="without adapter_config.json"):
        convert.load_any(tmp_path)


def test_import_does_not_pull_in_diffusers():
    import subprocess
    import sys

    code = "import convert, sys; bad = {'diffusers', 'transformers', 'peft'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_warnings_do_not_leak_between_reads(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert.load_any(_webui(tmp_path))  # a clean file gives no warning at all
