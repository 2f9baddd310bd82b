"""Every output file and folder gets the permissions the umask gives (a webui in another user/container reads them)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from fixtures_train import tiny_config, train_captions  # noqa: F401

import convert
from trainer.atomic import write_text


@pytest.fixture
def umask_022():
    """A known umask for the test, the old one restored after."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, str]:
    """Every path under `root` (and `root`) whose mode is not 0644 (files) / 0755 (folders), with its mode."""
    bad = {}
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode != (0o755 if p.is_dir() else 0o644):
            bad[str(p.relative_to(root.parent))] = oct(mode)
    return bad


def test_converted_loras_and_text_outputs_are_world_readable(tmp_path, umask_022):
    q = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
    lora = convert.LoraFile({q: convert.LoraModule(torch.randn(4, 32), torch.randn(32, 4), 4.0)}, family="sd1")
    out = tmp_path / "out"
    convert.save_webui(lora, out / "a.safetensors")
    convert.save_peft(lora, out / "peft")
    convert.save_diffusers(lora, out / "diffusers")
    write_text(out / "notes" / "x.txt", "hi")
    assert _modes(out) == {}


def test_a_training_run_writes_world_readable_outputs(tmp_path, train_captions, umask_022):  # noqa: F811
    from trainer.training.train import train

    cfg = tiny_config(tmp_path, "train.max_train_steps=2", "logging.save_steps=1", "logging.save_merged=true")
    result = train(cfg, caption_set=train_captions, progress=False)
    assert (result.output_dir / "checkpoint-2" / "adapter").is_dir() and result.merged_dir.is_dir()
    assert list((tmp_path / "cache").rglob("*.safetensors"))
    assert _modes(result.output_dir) == {} and _modes(tmp_path / "cache") == {}
