"""bench/gpu_check.py: the CPU dry run goes through the GPU check's code path and writes the GPU run's JSON shape."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_CHECKS = {"ran_all_steps", "loss_finite", "loss_moves", "lora_changed", "frozen_identical", "lora_fp32",
               "base_dtype"}


def results_listing() -> dict:
    return {p.name: p.stat().st_mtime_ns for p in (REPO / "bench" / "results").glob("*")}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run without --out: its JSON goes to the temp folder (TMPDIR here), not into bench/results/."""
    work = tmp_path_factory.mktemp("gpu_check")
    out = work / "sd-adverb-lora-bench" / "gpu_check_cpu-dry-run.json"
    before = results_listing()
    # A generous --time-limit: on a loaded CI machine a section skipped for time would make the run "incomplete";
    # this test is about what the checks find, the < 1 min is the dry run's own budget.
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--time-limit", "600"],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, "TMPDIR": str(work)})
    assert results_listing() == before  # the source tree's committed results are left alone
    return proc, out


def test_dry_run_passes_and_prints_the_table(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASS:" in proc.stdout and "section" in proc.stdout and str(out) in proc.stdout
    for name in ("setup", "fp16", "bf16", "fp16_grad_ckpt", "fp16_xformers", "fp16_8bit_adam", "resume",
                 "speed cached"):
        assert any(line.startswith(name) for line in proc.stdout.splitlines()), name


def test_dry_run_json_shape_and_results(dry_run):
    _, out = dry_run
    r = json.loads(out.read_text())
    assert r["schema"] == 1 and r["dry_run"] is True and r["complete"] is True
    assert {"environment", "profile", "setup", "variants", "resume", "speed", "summary"} <= r.keys()
    assert r["environment"]["device"] == "cpu" and r["profile"]["case"] == "tiny"
    steps = r["profile"]["steps"]

    assert set(r["variants"]) == {"fp16", "bf16", "fp16_grad_ckpt", "fp16_xformers", "fp16_8bit_adam"}
    for name, v in r["variants"].items():
        assert {"status", "reason", "elapsed_s", "budget_s", "over_budget"} <= v.keys(), name
        if v["status"] == "skipped":  # never silently dropped: a reason is recorded
            assert v["reason"] and v["skip_kind"] == "unavailable", name
            continue
        assert v["status"] == "pass", (name, v["reason"])
        assert CORE_CHECKS <= v["checks"].keys() and all(c["ok"] for c in v["checks"].values()), name
        assert len(v["losses"]) == steps and v["steps"] == steps
        assert v["mixed_precision"] == "no" and "fp32" in v["precision_note"]  # half precisions run fp32 on CPU
        assert v["requested"]["train.mixed_precision"] in ("fp16", "bf16")
    for name in ("fp16", "bf16", "fp16_grad_ckpt"):
        assert r["variants"][name]["status"] == "pass", name
    assert r["variants"]["fp16_grad_ckpt"]["checks"]["gradient_checkpointing_on"]["ok"]
    for name, what in (("fp16_xformers", "xformers"), ("fp16_8bit_adam", "bitsandbytes")):
        assert r["variants"][name]["status"] == "skipped" and what in r["variants"][name]["reason"]

    res = r["resume"]
    assert res["status"] == "pass", res["reason"]
    assert res["stop_step"] < res["total_steps"] and all(c["ok"] for c in res["checks"].values())
    assert res["bitwise_identical"] is True and res["lora_rel_diff"] == 0  # CPU: exact
    assert res["losses_stopped"] + res["losses_resumed"] == res["losses_straight"]

    sp = r["speed"]
    assert sp["status"] == "pass"
    for loop in ("floor", "cached"):
        assert sp[loop]["s_per_step"] > 0 and sp[loop]["steps_timed"] >= 1
        assert {"peak_vram_mb", "peak_vram_steps_mb"} <= sp[loop].keys()  # null on CPU
    assert sp["ratio_s_per_step"] > 0

    sm = r["summary"]
    assert sm["status"] == "pass" and not sm["failed"]
    assert set(sm["skipped"]) == {"fp16_xformers", "fp16_8bit_adam"}


def test_checks_detect_failures():
    """The comparisons fail when they should, and a failed section makes the command exit 1."""
    import torch

    sys.path.insert(0, str(REPO))
    from bench import gpu_check as gc

    a = {"x.lora_A.weight": torch.ones(2, 2), "x.lora_B.weight": torch.zeros(2, 2)}
    b = {"x.lora_A.weight": torch.ones(2, 2) * 2, "x.lora_B.weight": torch.zeros(2, 2)}
    assert not gc.lora_moved(a, b)["ok"] and "1/2" in gc.lora_moved(a, b)["detail"]
    assert gc.lora_moved(a, {k: v + 1 for k, v in a.items()})["ok"]

    class Pipe:
        def __init__(self, w):
            self.unet, self.vae, self.text_encoder = (torch.nn.Linear(2, 2) for _ in range(3))
            with torch.no_grad():
                self.unet.weight.fill_(w)

    assert gc.frozen_identical(Pipe(1.0), Pipe(1.0))["ok"] is False  # the other modules' random init differs
    p = Pipe(1.0)
    q = Pipe(1.0)
    q.vae.load_state_dict(p.vae.state_dict()), q.text_encoder.load_state_dict(p.text_encoder.state_dict())
    q.unet.bias.data.copy_(p.unet.bias.data)
    assert gc.frozen_identical(p, q)["ok"]
    q.unet.weight.data[0, 0] += 1e-3
    bad = gc.frozen_identical(p, q)
    assert not bad["ok"] and "unet.weight" in bad["detail"]

    checker = object.__new__(gc.Checker)
    checker.report = {"setup": {"status": "pass"}, "variants": {
        "fp16": {"status": "fail", "reason": "loss_finite: nan", "elapsed_s": 1.0, "budget_s": 60},
        "bf16": {"status": "skipped", "reason": "time budget", "skip_kind": "time"}},
        "resume": {}, "speed": {}, "summary": {}, "elapsed_s": 0.0, "environment": {"device": "cpu", "torch": "x"}}
    checker.out = Path(__import__("tempfile").mkdtemp()) / "r.json"
    checker.t0 = 0.0
    assert checker.finish() == 1
    checker.report["variants"]["fp16"]["status"] = "pass"
    assert checker.finish() == 3  # a section skipped for time: incomplete, not a pass
