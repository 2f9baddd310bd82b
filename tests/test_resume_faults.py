"""Resume under faults (issue 24): changed settings take effect or are refused before anything is written, other
data are refused, damaged checkpoints are named (and the previous intact one used or offered), a half-written
metrics line does not block a resume."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, train_captions):
    """A 4-step run with a checkpoint at every step (all kept), copied fresh for each test."""
    from trainer.training.train import train

    root = tmp_path_factory.mktemp("base")
    train(tiny_config(root, "train.max_train_steps=4", "logging.save_steps=1", "logging.checkpoints_total_limit=0"),
          caption_set=train_captions, progress=False)
    return root


def copy_run(base_run: Path, tmp_path: Path) -> Path:
    """A copy of the base run whose config.yaml points at the copy (as if it had been trained there)."""
    shutil.copytree(base_run / "run", tmp_path / "run")
    shutil.copytree(base_run / "cache", tmp_path / "cache")
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace(str(base_run), str(tmp_path)))
    return tmp_path / "run"


def lora_delta(run: Path, a: int, b: int) -> dict:
    from safetensors.torch import load_file

    wa = load_file(run / f"checkpoint-{a}" / "lora_state.safetensors")
    wb = load_file(run / f"checkpoint-{b}" / "lora_state.safetensors")
    return {k: wb[k] - wa[k] for k in wa}


def test_changed_learning_rate_takes_effect_and_is_recorded(tmp_path, base_run, train_captions):
    """Resumed from step 4 with half the learning rate, AdamW's step 5 moves every LoRA weight exactly half as far
    as with the old rate (same state, same gradients); metrics, config.yaml, ss_learning_rate and the optimizer
    all say the new rate."""
    from safetensors import safe_open

    from trainer.training.train import train

    same, half = copy_run(base_run, tmp_path / "same"), copy_run(base_run, tmp_path / "half")
    common = ("train.max_train_steps=5", "logging.save_steps=1", "logging.checkpoints_total_limit=0")
    train(tiny_config(tmp_path / "same", *common), caption_set=train_captions, progress=False, resume="latest")
    train(tiny_config(tmp_path / "half", *common, "train.learning_rate=5e-4"), caption_set=train_captions,
          progress=False, resume="latest")
    d_same, d_half = lora_delta(same, 4, 5), lora_delta(half, 4, 5)
    assert sum(int(d.abs().max() > 0) for d in d_same.values()) > len(d_same) // 2  # most weights moved
    for k in d_same:  # to a few float32 ulps of the weights (~0.1) the deltas are computed from
        torch.testing.assert_close(d_half[k], 0.5 * d_same[k], rtol=1e-3, atol=6e-8)
    moved_half = sum(d.abs().sum() for d in d_half.values())
    moved_same = sum(d.abs().sum() for d in d_same.values())
    assert abs(moved_half / moved_same - 0.5) < 1e-3
    records = [json.loads(line) for line in (half / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"]) for r in records] == [(1, 1e-3), (2, 1e-3), (3, 1e-3), (4, 1e-3), (5, 5e-4)]
    assert "learning_rate: 0.0005" in (half / "config.yaml").read_text()
    with safe_open(str(half / "checkpoint-5" / "adverb_lora.safetensors"), "pt") as f:
        assert f.metadata()["ss_learning_rate"] == "0.0005"
    saved = torch.load(half / "checkpoint-5" / "optimizer.pt", weights_only=True)
    assert saved["param_groups"][0]["lr"] == 5e-4 and saved["param_groups"][0]["initial_lr"] == 5e-4


def test_resume_refuses_what_it_cannot_honour_before_writing(tmp_path, base_run, train_captions, capsys):
    from trainer.__main__ import main
    from trainer.training.config import ConfigError
    from trainer.training.run_folder import RunFolderError
    from trainer.training.train import train

    run = copy_run(base_run, tmp_path)
    kept = {p: digest(p) for p in (run / "config.yaml", run / "logs" / "metrics.jsonl")}
    with pytest.raises(ConfigError, match=r"train.lora_rank: 4 -> 8 \(the checkpoint's LoRA has that shape\)"):
        train(tiny_config(tmp_path, "train.max_train_steps=6", "train.lora_rank=8"), caption_set=train_captions,
              progress=False, resume="latest")
    with pytest.raises(ConfigError, match=r"train.lr_scheduler: 'constant' -> 'cosine' \(the learning-rate "
                                          r"schedule is part of the checkpoint.*; train.seed: 42 -> 7 \(the data order"):
        train(tiny_config(tmp_path, "train.max_train_steps=6", "train.lr_scheduler=cosine", "train.seed=7"),
              caption_set=train_captions, progress=False, resume="latest")
    with pytest.raises(ConfigError, match=r"train.max_train_steps: 3 is below the checkpoint's step 4"):
        train(tiny_config(tmp_path, "train.max_train_steps=3"), caption_set=train_captions, progress=False,
              resume="latest")
    # Other data than the checkpoint's (one caption changed): refused, named as the data.
    records = list(train_captions.records)
    records[3] = type(records[3])(records[3].image_path, records[3].caption + " at night", source_id="x")
    other = train_captions.with_records(records)
    with pytest.raises(RunFolderError, match="the training data differ from the checkpoint's"):
        train(tiny_config(tmp_path, "train.max_train_steps=6"), caption_set=other, progress=False, resume="latest")
    assert {p: digest(p) for p in kept} == kept  # config.yaml and the metrics are as the run left them

    # So a plain CLI resume still works afterwards (it reads the run's config.yaml), and says what changed.
    train_captions.save(tmp_path / "captions.jsonl")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("processed_root: ''", f"processed_root: {tmp_path / 'captions.jsonl'}"))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "train.max_train_steps=5", "train.max_grad_norm=0.5",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resume: train.max_grad_norm: 1.0 -> 0.5 (from step 4 on)" in out
    assert json.loads((run / "checkpoint-5" / "trainer_state.json").read_text())["step"] == 5


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, base_run, train_captions, capsys):
    """An empty trainer_state.json (killed while writing, a full disk) in the newest checkpoint: a plain resume
    names the file and continues from the previous intact checkpoint; a half-written metrics line is dropped."""
    from trainer.training.train import train

    run = copy_run(base_run, tmp_path)
    (run / "checkpoint-4" / "trainer_state.json").write_text("")
    metrics = run / "logs" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 5, "loss": 0.1')  # a run killed mid-line
    capsys.readouterr()
    result = train(tiny_config(tmp_path, "train.max_train_steps=5", "logging.save_steps=1",
                               "logging.checkpoints_total_limit=0"),
                   caption_set=train_captions, progress=False, resume="latest")
    out = capsys.readouterr().out
    assert f"{run / 'checkpoint-4' / 'trainer_state.json'}: damaged checkpoint file (0 bytes" in out
    assert f"resuming from the previous intact checkpoint {run / 'checkpoint-3'} instead" in out
    assert f"resumed from {run / 'checkpoint-3'} at step 3" in out
    assert f"{metrics} line 5 is not a complete JSON record" in out
    assert result.final_step == 5
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3, 4, 5]
    assert json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4  # written anew


@pytest.mark.parametrize("file, damage", [
    ("optimizer.pt", lambda p: p.write_bytes(p.read_bytes()[:1000])),  # truncated
    ("lora_state.safetensors", lambda p: p.write_bytes(b"\x00garbage" * 16)),
    ("rng_state_0.pt", lambda p: p.write_bytes(b"")),
])
def test_damaged_explicit_checkpoint_is_named_with_the_previous_one(tmp_path, base_run, train_captions, file, damage):
    from trainer.training.checkpoint import CheckpointError
    from trainer.training.train import train

    run = copy_run(base_run, tmp_path)
    damage(run / "checkpoint-4" / file)
    config_before = digest(run / "config.yaml")
    with pytest.raises(CheckpointError) as e:
        train(tiny_config(tmp_path, "train.max_train_steps=5"), caption_set=train_captions, progress=False,
              resume=str(run / "checkpoint-4"))
    message = str(e.value)
    assert message.startswith(f"{run / 'checkpoint-4' / file}: damaged checkpoint file")
    assert f"The previous intact checkpoint is {run / 'checkpoint-3'}: resume from it" in message
    assert "weights_only" not in message and "\n" not in message
    assert digest(run / "config.yaml") == config_before
