"""One run per output folder (issue 24): a new run never overwrites an earlier one, two runs at once refuse,
SIGTERM exits non-zero, and options may sit between KEY=VALUE overrides."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_run_refuses_a_folder_holding_an_earlier_run(tmp_path, train_captions, capsys):
    from trainer.__main__ import main
    from trainer.training.run_folder import RunFolderError, earlier_results
    from trainer.training.train import train

    first = train(tiny_config(tmp_path, "train.max_train_steps=4"), caption_set=train_captions, progress=False)
    out = first.output_dir
    kept = {p: digest(p) for p in (first.lora_path, out / "config.yaml", first.metrics_path,
                                   out / "checkpoint-4" / "optimizer.pt")}
    second = tiny_config(tmp_path, "train.max_train_steps=2", "train.learning_rate=5e-4")
    with pytest.raises(RunFolderError, match=r"holds an earlier run \(2 checkpoint folder\(s\), the newest "
                                             r"checkpoint-4; the LoRA adverb_lora.safetensors; .*--overwrite"):
        train(second, caption_set=train_captions, progress=False)
    # The CLI says the same in one line (exit 2).
    config = tmp_path / "second.yaml"
    config.write_text(second.to_yaml())
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    assert "holds an earlier run" in capsys.readouterr().err
    assert {p: digest(p) for p in kept} == kept  # nothing of the earlier run was touched
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (out / ".trainer.lock").exists()

    # --overwrite: the earlier run's files go first, so nothing of the two runs is mixed.
    again = train(second, caption_set=train_captions, progress=False, overwrite=True)
    assert again.final_step == 2
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert "learning_rate: 0.0005" in (out / "config.yaml").read_text()
    assert [json.loads(line)["step"] for line in again.metrics_path.read_text().splitlines()] == [1, 2]
    assert earlier_results(out)  # and now the new run is protected in turn

    # Logs of a run that saved no checkpoint and no LoRA are not a run to keep: a new run may start there.
    crashed = tmp_path / "crashed"
    (crashed / "logs").mkdir(parents=True)
    (crashed / "config.yaml").write_text("{}")
    (crashed / "logs" / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    assert earlier_results(crashed) == []


def test_resume_refuses_a_folder_holding_another_run(tmp_path, train_captions):
    from trainer.training.run_folder import RunFolderError
    from trainer.training.train import train

    first = train(tiny_config(tmp_path, "train.max_train_steps=2"), caption_set=train_captions, progress=False)
    other = tiny_config(tmp_path, "train.max_train_steps=2", f"logging.output_dir={tmp_path / 'other'}")
    second = train(other, caption_set=train_captions, progress=False)
    kept = {p: digest(p) for p in (second.lora_path, second.metrics_path)}
    longer = tiny_config(tmp_path, "train.max_train_steps=4", f"logging.output_dir={tmp_path / 'other'}")
    with pytest.raises(RunFolderError, match=r"holds another run \(.*checkpoint-2.*\); resume into the checkpoint's own "
                                             r"folder \(" + re.escape(str(first.output_dir))):
        train(longer, caption_set=train_captions, progress=False, resume=str(first.output_dir / "checkpoint-2"))
    assert {p: digest(p) for p in kept} == kept  # the other run's files are untouched


def _wait_for(predicate, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the training process ended early (exit {proc.returncode}): "
                                 f"{proc.stdout.read()[-3000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the training process")


def test_second_run_in_a_busy_folder_refuses_and_sigterm_exits_non_zero(tmp_path, train_captions):
    """A real `python -m trainer train` holds the folder; a second run refuses naming its pid; SIGTERM then stops
    the first with a checkpoint and exit code 143 (so `train && next` does not go on); a stale lock is taken over."""
    from trainer.training.run_folder import LOCK_NAME, RunFolderError
    from trainer.training.train import train

    data = train_captions.save(tmp_path / "captions.jsonl")
    cfg = tiny_config(tmp_path, f"dataset.processed_root={data}", "train.max_train_steps=100000",
                      "logging.save_steps=0")
    config = tmp_path / "c.yaml"
    config.write_text(cfg.to_yaml())
    out = Path(cfg.logging.output_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainer", "train", "--config", str(config), "--no-progress"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        metrics = out / "logs" / "metrics.jsonl"
        _wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 1, proc)
        config_before = digest(out / "config.yaml")
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid
        with pytest.raises(RunFolderError, match=rf"in use by another training run \(pid {proc.pid} "):
            train(tiny_config(tmp_path, "train.max_train_steps=2"), caption_set=train_captions, progress=False)
        with pytest.raises(RunFolderError, match=rf"pid {proc.pid}"):  # a resume too
            train(cfg, caption_set=train_captions, progress=False, resume="latest")
        assert digest(out / "config.yaml") == config_before
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "(SIGTERM); resume with" in output
    (stopped,) = out.glob("checkpoint-*")
    step = json.loads((stopped / "trainer_state.json").read_text())["step"]
    assert not (out / LOCK_NAME).exists()

    # A lock file left by a process that is gone (kill -9) does not block the folder.
    (out / LOCK_NAME).write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": "gone", "since": "earlier"}))
    resumed = train(tiny_config(tmp_path, f"dataset.processed_root={data}", f"train.max_train_steps={step + 1}",
                                "logging.save_steps=0"), caption_set=train_captions, progress=False, resume="latest")
    assert resumed.final_step == step + 1 and not (out / LOCK_NAME).exists()


def test_options_may_come_between_overrides():
    from trainer.__main__ import build_parser

    args = build_parser().parse_args(["train", "--config", "c.yaml", "train.max_train_steps=3", "--no-progress",
                                      "logging.output_dir=runs/b", "--overwrite", "train.learning_rate=1e-4"])
    assert args.overrides == ["train.max_train_steps=3", "logging.output_dir=runs/b", "train.learning_rate=1e-4"]
    assert args.no_progress and args.overwrite and args.config == "c.yaml"
    args = build_parser().parse_args(["train", "--resume", "--no-progress", "train.max_train_steps=3"])
    assert args.resume == "latest" and args.overrides == ["train.max_train_steps=3"]
