"""A real 2-process data-parallel run (DDP over gloo on CPU) through `accelerate launch`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_run(tmp_path, train_captions):
    from safetensors.torch import load_file

    captions = train_captions.save(tmp_path / "captions.jsonl")
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(tmp_path, f"dataset.processed_root={captions}", "train.max_train_steps=3",
                                  "logging.save_steps=2", "dataset.random_flip=true").to_yaml())
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    # `accelerate launch --cpu` spawns several processes only through mpirun; its torchrun launcher
    # (--multi_gpu) starts them, and the trainer selects gloo on CPU when there is no GPU.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "--module", "trainer", "train", "--config", str(config), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    run = tmp_path / "run"
    ckpt = run / "checkpoint-3"
    assert sorted(p.name for p in ckpt.glob("rng_state_*.pt")) == ["rng_state_0.pt", "rng_state_1.pt"]
    r0, r1 = (torch.load(ckpt / f"rng_state_{r}.pt", weights_only=True)["noise"] for r in (0, 1))
    assert not torch.equal(r0, r1)  # each process draws its own noise
    assert (run / "adverb_lora.safetensors").is_file() and (run / "checkpoint-2").is_dir()
    lora = load_file(ckpt / "lora_state.safetensors")
    assert all(torch.isfinite(v).all() for v in lora.values())
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)
    records = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # logged once (main process), not once per process
    # 12 samples, batch 2 per process: 6 batches, 3 per process per epoch; samples/s counts both processes.
    assert all(r["epoch"] == 0 for r in records)
    assert records[-1]["samples_per_sec"] == pytest_approx(4 / records[-1]["step_time"])
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert {k: state[k] for k in ("step", "epoch", "batch")} == {"step": 3, "epoch": 1, "batch": 0}
    # what a resume checks against: the run's config and its data (all 12 samples, not one process's share)
    assert state["config"]["train"]["max_train_steps"] == 3 and state["data"].startswith("12:")


def pytest_approx(x):
    import pytest

    return pytest.approx(x, rel=1e-6)
