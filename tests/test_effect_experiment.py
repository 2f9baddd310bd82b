"""bench/effect_experiment.py --quick: the whole experiment's pipeline (data, pretraining, four LoRA arms through
`train()` measured at two step counts, the evaluator, the report) runs and writes a JSON and a chart of the right
shape with sane numbers, into a work folder (outputs/ under the current folder), never into bench/results/.

Slow (~1-2 min on a shared 2-core machine; 52 s measured with the machine lightly loaded): it pretrains a tiny UNet and trains three LoRAs. It checks the
pipeline, not the result: the quick profile trains too little for the result to mean anything (the committed full
run in bench/results/ is the result).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


RESULTS = REPO / "bench" / "results" / "effect_experiment_quick.json"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run from a scratch folder without --out: the default is outputs/effect_experiment under the current folder."""
    cwd = tmp_path_factory.mktemp("effect")
    before = RESULTS.stat().st_mtime_ns if RESULTS.exists() else None
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "effect_experiment.py"), "--quick", "--jobs", "2",
                           "--workdir", str(cwd / "work")], capture_output=True, text=True, timeout=900, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (RESULTS.stat().st_mtime_ns if RESULTS.exists() else None) == before  # the source tree is left alone
    return proc, cwd / "outputs" / "effect_experiment"


def _finite_positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_run_writes_report_and_chart(quick_run):
    proc, out = quick_run
    report_path, chart = out / "effect_experiment_quick.json", out / "effect_experiment_quick.png"
    assert chart.is_file() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "effect_experiment_quick.json" in proc.stdout
    r = json.loads(report_path.read_text())
    assert r["schema"] == 2 and r["profile"]["name"] == "quick"
    assert r["command"] == "python bench/effect_experiment.py --quick --jobs 2"
    assert set(r["models"]) == {"random_init", "no_correlation", "base", "arms"}
    assert set(r["models"]["arms"]) == {"filtered", "kept", "random", "decorrelated"}
    early, final = r["profile"]["early_steps"], r["profile"]["lora_steps"]
    assert set(r["by_steps"]) == {str(early), str(final)} and early < final
    for at in r["by_steps"].values():
        # the paired comparisons the experiment is about, each a difference inside its interval's neighbourhood
        assert {"filtered_minus_kept", "filtered_minus_base", "random_minus_kept", "decorrelated_minus_filtered",
                "decorrelated_minus_random", "decorrelated_minus_kept"} <= set(at["paired"])
        for d in [*at["paired"].values(), *at["unseen_minus_base"].values()]:
            lo, hi = d["ci"]
            assert math.isfinite(d["difference"]) and lo <= hi and lo - 0.05 <= d["difference"] <= hi + 0.05, d
        assert set(at["checks"]) >= {"base_reacts_to_correlated_adverb", "filtered_below_kept",
                                     "decorrelated_content_within_10pct", "decorrelated_unseen_not_amplified",
                                     "paired_decorrelated_minus_filtered_below_0",
                                     "goal_decorrelated_leaves_at_most_half"}
        assert all(isinstance(v, bool) for v in at["checks"].values())
    assert r["paired"] == r["by_steps"][str(early)]["paired"]  # the headline is the early step count
    assert r["environment"]["wall_seconds"] > 0


def test_every_model_has_ratios_with_intervals_around_them(quick_run):
    _, out = quick_run
    r = json.loads((out / "effect_experiment_quick.json").read_text())
    adverbs = r["design"]["correlated_adverb"], r["design"]["uncorrelated_adverb"], r["design"]["unseen_adverb"]
    models = [r["models"]["random_init"], r["models"]["no_correlation"], r["models"]["base"]]
    models += [a[k] for a in r["models"]["arms"].values() for k in ("pooled", "pooled_early")]
    for m in models:
        assert _finite_positive(m["reference_distance"])
        for a in adverbs:
            ratio = m["ratio_to_reference"][a]
            lo, hi = ratio["ci"]
            # a 95 % bootstrap interval around its point (slack: a ratio's bootstrap can be a little skewed)
            assert _finite_positive(ratio["ratio"]) and 0 < lo <= hi and 0.9 * lo <= ratio["ratio"] <= 1.1 * hi, (a, ratio)
            assert ratio["captions"] == r["profile"]["eval_captions"]
    # Each arm ran the configured LoRA steps for each seed, and the LoRA moved the model (not bit-identical to base).
    base_pairs = r["models"]["base"]["measured"]["pairs"]
    for arm in r["models"]["arms"].values():
        assert list(arm["seeds"]) == [str(s) for s in r["profile"]["seeds"]]
        for run in arm["seeds"].values():
            assert run["steps"] == r["profile"]["lora_steps"] and _finite_positive(run["final_loss"])
            assert [p["distance"] for p in run["measured"]["pairs"]] != [p["distance"] for p in base_pairs]
            # the early checkpoint is another LoRA than the final one
            assert [p["distance"] for p in run["measured_early"]["pairs"]] != \
                [p["distance"] for p in run["measured"]["pairs"]]


def test_arms_captions_are_what_each_arm_says(quick_run):
    _, out = quick_run
    r = json.loads((out / "effect_experiment_quick.json").read_text())
    data, adverb = r["data"], r["design"]["correlated_adverb"]
    # pretraining: the adverb goes with small shapes most of the time
    assert data["pretrain"][adverb]["p_small_given_adverb"] > 0.6
    # the method: the pack's filter left no adverb; the controls have them
    assert data["arms"]["filtered"][adverb]["share_of_captions"] == 0
    assert data["arms"]["filtered"][r["design"]["uncorrelated_adverb"]]["share_of_captions"] == 0
    assert data["arms"]["kept"][adverb]["share_of_captions"] > 0.2
    assert data["arms"]["random"][adverb]["share_of_captions"] > 0.2
    # the product's decorrelate mode (it does not know which adverb is the correlated one) kept the adverbs but
    # made them far less telling of the size than in the kept captions
    dec, kept = data["arms"]["decorrelated"][adverb], data["arms"]["kept"][adverb]
    assert dec["share_of_captions"] > 0.2
    assert abs(dec["p_small_given_adverb"] - 0.5) < abs(kept["p_small_given_adverb"] - 0.5)
    report = data["arms"]["decorrelated"]["decorrelate"]
    assert report["variants"] >= 2 and report["pool"]["source"] == "dataset" and report["fallbacks"] == 0
