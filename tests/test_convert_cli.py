"""`python -m convert`: conversions, --inspect, --verify exit codes, options, one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import convert
from convert.__main__ import main

REPO = Path(__file__).resolve().parents[1]
Q = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
TE = "text_encoder.text_model.encoder.layers.0.self_attn.v_proj"


def _peft_dir(tmp_path) -> Path:
    g = torch.Generator().manual_seed(0)
    mods = {Q: convert.LoraModule(torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g), 8.0),
            TE: convert.LoraModule(torch.randn(2, 32, generator=g), torch.randn(32, 2, generator=g), 1.0)}
    return convert.save_peft(convert.LoraFile(mods, {"ss_caption_filter": "adverbs"}), tmp_path / "ckpt")


def test_to_webui_then_back_and_verify(tmp_path, capsys):
    src = _peft_dir(tmp_path)
    assert main(["--to_webui", str(src)]) == 0
    webui = tmp_path / "ckpt_webui.safetensors"
    assert webui.is_file() and "peft -> webui" in capsys.readouterr().out
    assert main(["--to_webui", str(src)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["--to_webui", str(src), "--force", "--ldm-names", "--dtype", "fp16"]) == 0
    assert convert.load_any(webui).format == "webui-ldm"
    assert main(["--verify", str(src), str(webui)]) == 1  # fp16 factors differ beyond 1e-5
    assert "DIFFERENT" in capsys.readouterr().out
    assert main(["--verify", str(src), str(webui), "--rtol", "5e-3"]) == 0
    assert main(["--to_peft", str(webui), "-o", str(tmp_path / "back")]) == 0
    assert main(["--to_diffusers", str(webui), "--fold-alpha"]) == 0
    diffusers = tmp_path / "ckpt_webui_diffusers" / "pytorch_lora_weights.safetensors"
    assert diffusers.is_file()
    capsys.readouterr()
    assert main(["--verify", str(tmp_path / "back"), str(diffusers)]) == 0
    assert "OK: 2 common modules" in capsys.readouterr().out


def test_inspect_reports_format_family_groups_and_metadata(tmp_path, capsys):
    src = _peft_dir(tmp_path)
    assert main(["--inspect", str(src)]) == 0
    out = capsys.readouterr().out
    assert "format:   peft" in out and "UNet 1, text encoder 1" in out
    assert "unet: attn1 (self-attention)" in out and "rank 4" in out and "alpha 8" in out
    assert "text_encoder: self_attn" in out and "ss_caption_filter: adverbs" in out


def test_errors_are_one_line_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    assert main(["--to_webui", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bad) in err and "\n" not in err
    src = _peft_dir(tmp_path)
    assert main(["--to_webui", str(src), "--fold-alpha"]) == 2
    assert main(["--to_peft", str(src), "-o", str(src / "text_encoder"), "--force"]) == 2  # inside the input
    assert "input" in capsys.readouterr().err


def test_module_runs_from_repo_root():
    out = subprocess.run([sys.executable, "-m", "convert", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "--to_webui" in out.stdout and "--verify" in out.stdout


def test_nonfinite_weights_are_refused_naming_the_modules(tmp_path, capsys):
    """A diverged LoRA (NaN/inf weights) does not convert silently; --allow-nonfinite converts it with a warning."""
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g)
    for bad_value in (float("nan"), float("inf")):
        broken = up.clone()
        broken[3, 1] = bad_value
        te_down = torch.randn(2, 32, generator=g).half()
        te_down[0, 0] = -bad_value
        lora = convert.LoraFile({Q: convert.LoraModule(down, broken, 8.0),
                                 TE: convert.LoraModule(te_down, torch.randn(32, 2, generator=g).half(), 1.0)})
        src = convert.save_webui(lora, tmp_path / f"broken_{bad_value}.safetensors", overwrite=True)
        for argv in (["--to_peft", str(src)], ["--inspect", str(src)], ["--verify", str(src), str(src)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert err.startswith(f"error: {src}: 2 of 2 modules have NaN/inf weights (") and "--allow-nonfinite" in err
            assert Q in err and TE in err and "\n" not in err.strip()
        assert not (tmp_path / f"broken_{bad_value}_peft").exists()
        assert main(["--to_peft", str(src), "--allow-nonfinite"]) == 0
        assert "warning: " in capsys.readouterr().err and (tmp_path / f"broken_{bad_value}_peft").is_dir()
    fine = convert.save_webui(convert.LoraFile({Q: convert.LoraModule(down * 1e30, up * 1e30, 4.0)}),
                              tmp_path / "big.safetensors")  # huge but finite: its sum overflows, it is still read
    assert convert.load_any(fine).modules[Q].up.abs().max() > 1e29
