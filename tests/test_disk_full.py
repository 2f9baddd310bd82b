"""A full disk (issue 24), on a real small tmpfs: the trainer and the converter say "no space left on device"
naming where, exit with their error codes, and leave no half-written temp folder that keeps the disk full.

Mounting a tmpfs needs root (CI containers run as root); elsewhere these tests skip and say why.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)


@pytest.fixture
def small_disk(tmp_path):
    """`mount(size)`: a fresh tmpfs of `size` (e.g. "2m") under tmp_path; unmounted afterwards."""
    mounted = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_checkpoint_on_a_full_disk_says_so_and_leaves_no_temp_folder(tmp_path, small_disk, train_captions, capsys):
    """2 MiB: config, logs and checkpoint-1 (~1.2 MiB) fit, checkpoint-2 does not."""
    from trainer.__main__ import main
    from trainer.training.checkpoint import load_checkpoint

    disk = small_disk("2m")
    data = train_captions.save(tmp_path / "captions.jsonl")
    cfg = tiny_config(tmp_path, f"dataset.processed_root={data}", f"logging.output_dir={disk / 'run'}",
                      "train.max_train_steps=4", "logging.save_steps=1", "logging.checkpoints_total_limit=0")
    config = tmp_path / "c.yaml"
    config.write_text(cfg.to_yaml())
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no space left on device writing checkpoint-2 into ") and "\n" not in err
    assert f"{disk / 'run' / '.checkpoint-2.tmp'}" in err and "resume with" in err
    run = disk / "run"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-1", "config.yaml", "logs"]  # no .tmp, no lock
    assert load_checkpoint(run / "checkpoint-1")["state"]["step"] == 1  # the last complete checkpoint is intact
    records = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]


def test_converter_on_a_full_disk_gives_its_one_line_error(tmp_path, small_disk, capsys):
    """A LoRA of ~600 KiB converted onto a 256 KiB disk: exit 2 with one line naming the output, nothing left."""
    import torch

    import convert
    from convert.__main__ import main

    g = torch.Generator().manual_seed(0)
    mods = {f"unet.down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1.to_{q}":
            convert.LoraModule(torch.randn(8, 1024, generator=g), torch.randn(1024, 8, generator=g), 8.0)
            for b in (0, 1) for a in (0, 1) for q in ("q", "k")}  # 8 modules x 64 KiB
    src = convert.save_webui(convert.LoraFile(mods, {}), tmp_path / "lora.safetensors")
    disk = small_disk("256k")
    for args, out in ((["--to_webui", str(src)], disk / "out.safetensors"),
                      (["--to_peft", str(src)], disk / "out_peft"),
                      (["--to_diffusers", str(src)], disk / "out_diffusers")):
        capsys.readouterr()
        assert main([*args, "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert "no space left on device" in err.lower() and str(out) in err, err
        assert list(disk.iterdir()) == []  # no temp file or folder keeps the disk full
