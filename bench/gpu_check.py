"""One prepared check of the CUDA training path: precisions, xformers, 8-bit AdamW, exact resume, speed (issue 15).

    python bench/gpu_check.py --out bench/results/gpu_check_<gpu-name>.json    # on one GPU: < 8 min, no downloads
    python bench/gpu_check.py --dry-run     # the same code path on CPU, < 1 min; JSON in <temp>/sd-adverb-lora-bench/

GPU run: SD1.5's real architecture (the configs shipped in trainer/assets/sd15) with random weights, a generated
dataset (trainer/captions/sample_dataset.py), 512 px, batch 4. Sections, each timed against its own budget:
  variants  30 steps of `train()` for fp16 (GradScaler), bf16, fp16 + gradient checkpointing, fp16 + xformers,
            fp16 + 8-bit AdamW. Each asserts: every logged loss finite, the loss not constant, every LoRA tensor
            changed, the frozen UNet/VAE/text-encoder weights bit-identical to the originals (cast to the dtype
            the run holds them in), and that the feature was really in effect (scaler, half-precision base with
            fp32 LoRA, checkpointing flag, xformers attention processors, bitsandbytes optimizer).
  resume    fp16 with deterministic algorithms: 20 steps straight == stopped at 10 + resumed to 20, within the
            tolerance justified at RESUME_REL_TOL; a second straight run measures the run-to-run noise.
  speed     s/step (median of the steady steps) and peak VRAM of our cached step (`train()`) against the bare
            floor (UNet forward + backward + AdamW on pre-made latents and embeddings, bench/common.py), same
            precision (fp16), and their ratios (issue 5's goal: cached <= 1.05x floor at SD1.5 size).
--dry-run: the tiny SD1.5 model on CPU, 64 px, a few steps; fp16 runs in fp32 there (accelerate has no fp16
autocast or GradScaler on CPU), xformers and 8-bit AdamW are skipped (they need CUDA). The JSON has the same shape.

A variant that cannot run (no xformers, no bitsandbytes, no bf16) is recorded as skipped with the reason. Exit code:
0 all checks that ran passed, 1 a check failed, 3 a section was skipped for lack of time (--time-limit), 2 usage.
The JSON is rewritten after every section, so a run killed from outside keeps what it measured ("complete": false).
"""
from __future__ import annotations

import time

T_START = time.perf_counter()  # the time limit counts from here, imports included

import argparse  # noqa: E402
import contextlib
import copy
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

# Must be set before the first cuBLAS handle exists (so before any CUDA work): cuBLAS then uses a fixed workspace
# and its GEMMs are deterministic, which the resume section needs. It costs at most a few % of GEMM speed, for the
# floor and the cached step alike, so the speed ratio is not biased.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# No downloads: everything is built from the configs and tokenizer shipped in trainer/assets. Offline mode makes an
# accidental hub call fail at once instead of hanging on a machine without network.
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "DIFFUSERS_OFFLINE"):
    os.environ.setdefault(_k, "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import StepClock, build_pipeline, floor_loop, sample_captions  # noqa: E402

SCHEMA = 1

PROFILES = {
    # GPU: what issue 15 asks. Budgets (s) are per section and add up to 455 s <= time_limit 480 s (8 min), which
    # leaves 2 min of the 10-min command limit; the watchdog ends the run at time_limit + HARD_MARGIN_S whatever
    # happens. Each budget has margin over an A100/H100-class GPU: an SD1.5 step at 512 px, batch 4, fp16 is
    # ~0.15-0.4 s there, so 30 steps plus copying the 1.07 B-parameter model (CPU, ~3 s), moving it to the GPU,
    # the latent cache and the final export take well under a minute. Setup: building the random SD1.5 model
    # on the CPU (~10-30 s). Resume: 4 runs of 10-20 steps. Speed: 2 x 30 steps.
    "gpu": dict(case="sd15", resolution=512, batch=4, steps=30, resume_stop=10, resume_total=20, speed_steps=30,
                speed_warmup=5, n_images=16, time_limit=480,
                budgets=dict(setup=60, variant=45, variant_gc=55, resume=100, speed=60)),
    # CPU dry run: the same code path on the tiny model, as few steps as still show each check.
    # Batch 2 over 4 images: the resume stops at an epoch boundary and continues into the next epoch.
    "dry": dict(case="tiny", resolution=64, batch=2, steps=3, resume_stop=2, resume_total=4, speed_steps=4,
                speed_warmup=1, n_images=4, time_limit=170,
                budgets=dict(setup=20, variant=25, variant_gc=25, resume=50, speed=30)),
}

VARIANTS = {
    # name: config overrides
    "fp16": {"train.mixed_precision": "fp16"},
    "bf16": {"train.mixed_precision": "bf16"},
    "fp16_grad_ckpt": {"train.mixed_precision": "fp16", "train.gradient_checkpointing": "true"},
    "fp16_xformers": {"train.mixed_precision": "fp16", "train.enable_xformers": "true"},
    "fp16_8bit_adam": {"train.mixed_precision": "fp16", "train.use_8bit_adam": "true"},
}

# Resume on CUDA is compared with a tolerance, not bit for bit. With torch.use_deterministic_algorithms(True) and
# CUBLAS_WORKSPACE_CONFIG set, the same kernels on the same GPU give the same bits, and then the difference is 0.
# Ops without a deterministic CUDA kernel only warn (warn_only=True; they are listed in the JSON as
# nondeterministic_ops): they reorder floating-point sums (atomics), which changes a gradient by rounding only,
# ~1e-3 relative at worst in fp16 activations. Adam's update is invariant to the gradient's scale, so such noise
# stays ~1e-3 relative in the LoRA's movement after 10 steps. A real resume fault (RNG, data position, optimizer
# moments, LR schedule, GradScaler state not restored) changes at least one of the 20 steps outright, ~1/20 = 5e-2
# of the movement. 1e-2 sits between the two: 10x above rounding noise, 5x below one wrong step. Measured as
# ||LoRA_resumed - LoRA_straight|| / ||LoRA_straight - LoRA_init||.
RESUME_REL_TOL = 1e-2
HARD_MARGIN_S = 60  # the watchdog writes the JSON and exits this long after --time-limit (a hung section)
SPEED_GOAL = {"sd15": 1.05, "tiny": 1.15}  # cached / floor s/step (issue 5); reported, not a pass/fail check


class Skip(Exception):
    """A section that cannot run here; the reason goes into the JSON."""


# --------------------------------------------------------------------------- environment

def environment(device) -> dict:
    import accelerate
    import diffusers
    import peft
    import torch
    import transformers

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "accelerate": accelerate.__version__, "device": str(device),
           "cpu_count": os.cpu_count(), "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
    for mod in ("xformers", "bitsandbytes"):
        v, _ = optional_import(mod)
        env[mod] = v
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu_name=props.name, capability=f"{props.major}.{props.minor}",
                   total_vram_mb=round(props.total_memory / 2**20), bf16_supported=torch.cuda.is_bf16_supported(),
                   cudnn=torch.backends.cudnn.version())
    return env


def optional_import(name: str):
    """(version or "installed", None) or (None, the reason it cannot be imported)."""
    try:
        mod = __import__(name)
    except Exception as e:  # ImportError, or a broken binary raising something else at import
        return None, f"{name} is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return getattr(mod, "__version__", "installed"), None


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


# --------------------------------------------------------------------------- spying on train()

class Spy:
    """Patches `trainer.training.train`'s set-up functions to keep what they built (the accelerator, the optimizer,
    the LoRA right after its init), so a check can see what a run really used. Nothing in the loop is changed."""

    def __init__(self):
        self.accelerator = self.optimizer = None
        self.lora_init: dict | None = None

    @contextlib.contextmanager
    def on(self):
        import trainer.training.train as T
        from trainer.models.lora import lora_state_dict

        orig = T.make_accelerator, T._optimizer, T.add_lora

        def make_accelerator(*a, **k):
            acc, dtype = orig[0](*a, **k)
            self.accelerator = acc
            return acc, dtype

        def _optimizer(*a, **k):
            self.optimizer = orig[1](*a, **k)
            return self.optimizer

        def add_lora(unet, *a, **k):
            out = orig[2](unet, *a, **k)
            self.lora_init = {n: v.detach().float().cpu().clone() for n, v in lora_state_dict(unet).items()}
            return out

        T.make_accelerator, T._optimizer, T.add_lora = make_accelerator, _optimizer, add_lora
        try:
            yield self
        finally:
            T.make_accelerator, T._optimizer, T.add_lora = orig

    def scaler_scale(self):
        scaler = getattr(self.accelerator, "scaler", None)
        return float(scaler.get_scale()) if scaler is not None else None


# --------------------------------------------------------------------------- the checker

class Checker:
    def __init__(self, args, profile: dict, device, out: Path, workdir: Path):
        self.args, self.p, self.device, self.out, self.workdir = args, profile, device, out, workdir
        self.t0 = T_START
        self.current = None  # the section running now (for the watchdog)
        self.base = None  # the random-weight pipeline every run copies (never trained itself)
        self.captions = None
        self.report = {
            "schema": SCHEMA, "check": "gpu_check", "dry_run": args.dry_run, "complete": False,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": 0.0, "environment": environment(device),
            "profile": {k: v for k, v in profile.items() if k != "budgets"} | {
                "device": str(device), "budgets_s": profile["budgets"], "resume_rel_tol": RESUME_REL_TOL},
            "setup": {}, "variants": {}, "resume": {}, "speed": {}, "summary": {},
        }

    # ---- plumbing

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def write(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

    def section(self, name: str, budget: float, fn, *a) -> dict:
        """Run one section: time it, catch its failure, record it, rewrite the JSON."""
        rec: dict = {"status": "", "reason": None, "budget_s": budget}
        left = self.p["time_limit"] - self.elapsed()
        print(f"[{name}] start (budget {budget:.0f} s, {left:.0f} s left of {self.p['time_limit']} s)", flush=True)
        t = time.perf_counter()
        self.current = (name, rec, t)
        if left < budget:
            rec.update(status="skipped", reason=f"time budget: {left:.0f} s left of --time-limit, section needs "
                                                f"up to {budget:.0f} s", skip_kind="time")
        else:
            try:
                rec.update(fn(*a))
                checks = rec.get("checks", {})
                rec["status"] = "pass" if all(c["ok"] for c in checks.values()) else "fail"
                if rec["status"] == "fail":
                    rec["reason"] = "; ".join(f"{k}: {c.get('detail')}" for k, c in checks.items() if not c["ok"])
            except Skip as e:
                rec.update(status="skipped", reason=str(e), skip_kind="unavailable")
            except Exception as e:  # a crash is a failed check; the next sections still run
                rec.update(status="fail", reason=f"{type(e).__name__}: {e}",
                           traceback=traceback.format_exc()[-4000:])
                traceback.print_exc()
        self.current = None
        rec["elapsed_s"] = round(time.perf_counter() - t, 1)
        rec["over_budget"] = rec["elapsed_s"] > budget
        self.free()
        print(f"[{name}] {rec['status'].upper()} in {rec['elapsed_s']:.1f} s (budget {budget:.0f} s)"
              + (f": {rec['reason']}" if rec["reason"] else ""), flush=True)
        return rec

    def free(self) -> None:
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def reset_peak(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self):
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None

    def precision(self, requested: str) -> tuple[str, str | None]:
        """The precision a run uses here, and why it differs from the requested one (CPU dry run)."""
        import torch

        if not self.cuda:
            # fp16: accelerate has no fp16 autocast or GradScaler on CPU. bf16 works there but is ~10x slower than
            # fp32 on a small CPU, which the < 1 min dry run cannot afford (tests/test_train.py covers it).
            return "no", f"CPU dry run: {requested} ran in fp32"
        if requested == "bf16" and not torch.cuda.is_bf16_supported():
            raise Skip(f"bf16 is not supported on {torch.cuda.get_device_name(self.device)}")
        return requested, None

    def config(self, name: str, overrides: dict, steps: int, log_steps: int = 1):
        from trainer.training.config import config_from_dict

        p, overrides = self.p, dict(overrides)
        # As a value, not an override string: the override "no" would be read as YAML's false.
        precision = overrides.pop("train.mixed_precision", "no")
        return config_from_dict({"train": {"mixed_precision": precision}}, [
            f"model_name={p['case']}-random", f"dataset.resolution={p['resolution']}", "dataset.buckets=false",
            "dataset.adverb_mode=none", "dataset.cache_latents=true", f"dataset.cache_dir={self.workdir / 'cache'}",
            f"train.max_train_steps={steps}", f"train.train_batch_size={p['batch']}", "train.learning_rate=1e-4",
            f"logging.output_dir={self.workdir / name}", "logging.save_steps=0", f"logging.log_steps={log_steps}",
            "logging.tensorboard=false", *(f"{k}={v}" for k, v in overrides.items()),
        ])

    def fresh_pipe(self):
        """A pipeline with the original weights for one run (the base itself is never trained)."""
        if not self.cuda:
            # On CPU, `.to("cpu")` keeps the same tensors, so only a real copy keeps the originals apart.
            return copy.deepcopy(self.base)
        # On CUDA the new modules' parameters share the originals' CPU storage (a deep copy of the 1.07 B-parameter
        # model costs 5-30 s a run): `train()` moves every module to the GPU, which is the copy, and rebinds only
        # the new Parameter objects. `base_untouched` (in the summary) checks the originals stayed as they were.
        import torch

        memo = {id(p): torch.nn.Parameter(p.data, requires_grad=p.requires_grad)
                for m in (self.base.unet, self.base.vae, self.base.text_encoder) for p in m.parameters()}
        return copy.deepcopy(self.base, memo)

    def base_fingerprint(self) -> dict:
        from trainer.training.latent_cache import model_fingerprint

        return {k: model_fingerprint(getattr(self.base, k)) for k in ("unet", "vae", "text_encoder")}

    def train(self, cfg, pipe, spy: Spy, callbacks=(), resume=None):
        from trainer.models.base import BaseModel
        from trainer.training.train import train

        with spy.on():
            return train(cfg, caption_set=self.captions, callbacks=list(callbacks), resume=resume,
                         model=BaseModel(pipe, "sd1", "epsilon", f"{self.p['case']}-random"), progress=False)

    # ---- sections

    def setup(self) -> dict:
        import torch

        t = time.perf_counter()
        torch.manual_seed(0)
        self.base = build_pipeline(self.p["case"])
        built = time.perf_counter() - t
        self.captions = sample_captions(self.workdir, self.p["n_images"])
        n = {k: sum(p.numel() for p in getattr(self.base, k).parameters()) for k in ("unet", "vae", "text_encoder")}
        self.fingerprint = self.base_fingerprint()
        return {"model": f"{self.p['case']} random weights", "parameters": n, "build_s": round(built, 1),
                "images": len(self.captions.records), "fingerprint": self.fingerprint, "checks": {}}

    def variant(self, name: str, overrides: dict) -> dict:
        import torch

        from trainer.models.lora import lora_state_dict

        want = overrides["train.mixed_precision"]
        used, note = self.precision(want)
        if "train.enable_xformers" in overrides:
            _, why = optional_import("xformers")
            if why:
                raise Skip(why)
            if not self.cuda:
                raise Skip("xformers is installed but its attention kernels need CUDA (dry run on CPU)")
        if "train.use_8bit_adam" in overrides:
            _, why = optional_import("bitsandbytes")
            if why:
                raise Skip(why)
            if not self.cuda:
                raise Skip("bitsandbytes is installed but its 8-bit AdamW needs CUDA (dry run on CPU)")
        ov = dict(overrides, **{"train.mixed_precision": used})
        steps = self.p["steps"]
        cfg = self.config(name, ov, steps)
        pipe, spy, clock = self.fresh_pipe(), Spy(), StepClock(self.device)
        self.reset_peak()
        result = self.train(cfg, pipe, spy, [clock])
        peak = self.peak_mb()
        rec = {"requested": overrides, "mixed_precision": used, "precision_note": note, "steps": result.final_step,
               "losses": [round(x, 6) for x in result.losses], "peak_vram_mb": peak,
               "s_per_step_median": round(statistics.median(clock.times), 4) if clock.times else None}
        checks = rec["checks"] = {}
        losses = result.losses
        checks["ran_all_steps"] = _check(result.final_step == steps and not result.stopped_early,
                                         f"{result.final_step}/{steps} steps, stop reason {result.stop_reason!r}")
        checks["loss_finite"] = _check(len(losses) == steps and all(math.isfinite(x) for x in losses),
                                       f"{len(losses)} logged losses, min {min(losses, default=None)}, "
                                       f"max {max(losses, default=None)}")
        # The loss of one step depends on its random timesteps and noise, so "moves" means it is not constant
        # (a graph that does not reach the UNet, or a scaler that zeroes every step, would log the same value).
        checks["loss_moves"] = _check(len(set(losses)) > 1, f"{len(set(losses))} distinct values over {len(losses)}")
        lora = {n: v.detach().float().cpu() for n, v in lora_state_dict(pipe.unet).items()}
        checks["lora_changed"] = lora_moved(spy.lora_init, lora, self.p["resolution"])
        checks["frozen_identical"] = frozen_identical(self.base, pipe)
        checks["lora_fp32"] = _check(bool(lora) and all(v.dtype == torch.float32 for n, v in
                                                        lora_state_dict(pipe.unet).items()),
                                     "the LoRA weights are trained in fp32")
        half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(used, torch.float32)
        base_dtypes = {str(p.dtype) for n, p in pipe.unet.named_parameters() if "lora_" not in n}
        checks["base_dtype"] = _check(base_dtypes == {str(half)}, f"frozen UNet weights in {sorted(base_dtypes)}")
        rec["scaler_final_scale"] = scale = spy.scaler_scale()  # None without a GradScaler (bf16, fp32)
        if used == "fp16" and self.cuda:
            checks["grad_scaler"] = _check(scale is not None, f"GradScaler scale at the end: {scale}")
        if overrides.get("train.gradient_checkpointing") == "true":
            on = bool(pipe.unet.is_gradient_checkpointing)
            checks["gradient_checkpointing_on"] = _check(on, f"unet.is_gradient_checkpointing={on}")
        if overrides.get("train.enable_xformers") == "true":
            procs = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
            checks["xformers_attention"] = _check(all("XFormers" in p for p in procs), f"attention processors {procs}")
        if overrides.get("train.use_8bit_adam") == "true":
            opt = spy.optimizer
            states = list(opt.state.values()) if opt is not None else []
            n8 = sum(1 for s in states if any(getattr(v, "dtype", None) == torch.uint8 for v in s.values()))
            # bitsandbytes keeps 32-bit state for tensors under min_8bit_size (4096 elements): small LoRA
            # matrices are among them, so not every tensor has an 8-bit state.
            rec["params_with_8bit_state"] = f"{n8}/{len(states)}"
            checks["bitsandbytes_optimizer"] = _check(opt is not None and "8bit" in type(opt).__name__,
                                                      f"optimizer {type(opt).__module__}.{type(opt).__name__}; "
                                                      f"{n8}/{len(states)} LoRA tensors with 8-bit state")
        del pipe, spy
        return rec

    def resume(self) -> dict:
        import torch

        from trainer.models.lora import lora_state_dict

        used, note = self.precision("fp16")
        stop, total = self.p["resume_stop"], self.p["resume_total"]
        prev = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark, \
            torch.backends.cudnn.deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        nondet: set[str] = set()
        scales: dict = {}

        class StopAt:
            def __init__(self):
                self.asked = 0

            def should_stop(self):
                self.asked += 1
                return self.asked == stop

        def run(name, callbacks=(), resume=None):
            spy, pipe = Spy(), self.fresh_pipe()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = self.train(self.config(name, {"train.mixed_precision": used}, total), pipe, spy, callbacks,
                                 resume)
            nondet.update(str(w.message).splitlines()[0][:200] for w in caught
                          if "deterministic" in str(w.message).lower())
            scales[name if not resume else name + "_resumed"] = spy.scaler_scale()
            lora = {n: v.detach().float().cpu() for n, v in lora_state_dict(pipe.unet).items()}
            return res, lora, spy.lora_init

        try:
            full, lora_full, lora_init = run("resume_straight")
            part, _, _ = run("resume_part", [StopAt()])
            resumed, lora_resumed, _ = run("resume_part", resume="latest")
            _, lora_repeat, _ = run("resume_repeat")
        finally:
            torch.use_deterministic_algorithms(prev[0])
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev[1], prev[2]

        def rel(a, b):
            num = math.sqrt(sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a))
            den = math.sqrt(sum(float((a[k] - lora_init[k]).double().pow(2).sum()) for k in a))
            return num / den if den else math.inf, max(float((a[k] - b[k]).abs().max()) for k in a)

        rel_resume, max_resume = rel(lora_full, lora_resumed)
        rel_repeat, max_repeat = rel(lora_full, lora_repeat)
        losses_joined = part.losses + resumed.losses
        loss_diff = max((abs(a - b) for a, b in zip(losses_joined, full.losses)), default=math.inf)
        bitwise = all(torch.equal(lora_full[k], lora_resumed[k]) for k in lora_full) and losses_joined == full.losses
        rec = {"mixed_precision": used, "precision_note": note, "stop_step": stop, "total_steps": total,
               "deterministic_algorithms": "torch.use_deterministic_algorithms(True, warn_only=True); "
                                           "cudnn.deterministic; CUBLAS_WORKSPACE_CONFIG="
                                           + str(os.environ.get("CUBLAS_WORKSPACE_CONFIG")),
               "nondeterministic_ops": sorted(nondet), "bitwise_identical": bitwise,
               "lora_rel_diff": rel_resume, "lora_max_abs_diff": max_resume,
               "repeat_lora_rel_diff": rel_repeat, "repeat_lora_max_abs_diff": max_repeat,
               "loss_max_abs_diff": loss_diff, "losses_straight": full.losses, "losses_stopped": part.losses,
               "losses_resumed": resumed.losses, "scaler_scale": scales, "tolerance": RESUME_REL_TOL}
        checks = rec["checks"] = {}
        checks["stopped_at"] = _check(part.stopped_early and part.final_step == stop,
                                      f"stopped at step {part.final_step} (asked at {stop})")
        checks["resumed_to"] = _check(resumed.final_step == total and not resumed.stopped_early,
                                      f"resumed run ended at step {resumed.final_step}")
        checks["losses_continue"] = _check(len(losses_joined) == total and loss_diff <= 1e-2 * max(
            statistics.fmean(full.losses), 1e-8), f"max |loss diff| {loss_diff:.3g} over {len(losses_joined)} steps")
        hint = ""
        if rel_resume > RESUME_REL_TOL and scales.get("resume_part_resumed") != scales.get("resume_straight"):
            # The scale only changes when a step overflows (halved, step skipped) or after 2000 clean steps.
            hint = (" (the GradScaler ended at a different scale than the straight run: checkpoints do not save the "
                    "scaler state, so a resumed fp16 run restarts at the initial scale and re-skips overflowing steps)")
        checks["lora_matches"] = _check(rel_resume <= RESUME_REL_TOL,
                                        f"||resumed - straight|| / ||straight - init|| = {rel_resume:.3g} "
                                        f"(tolerance {RESUME_REL_TOL}; run-to-run {rel_repeat:.3g}; bitwise "
                                        f"{bitwise}){hint}")
        return rec

    def speed(self) -> dict:
        import torch

        used, note = self.precision("fp16")
        steps, warm = self.p["speed_steps"], self.p["speed_warmup"]
        out: dict = {"mixed_precision": used, "precision_note": note, "steps": steps, "warmup_steps": warm}
        if self.cuda:  # memory still held from earlier sections (leaks would inflate both peaks)
            out["vram_allocated_before_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        # The floor: the same LoRA, precision and batch, no data pipeline, no accelerate.
        cfg = self.config("speed_cached", {"train.mixed_precision": used}, steps, log_steps=steps)
        pipe = self.fresh_pipe()  # the floor moves only the UNet to the device
        self.reset_peak()
        peaks = {}
        times = floor_loop(pipe, cfg.train, batch=self.p["batch"], resolution=self.p["resolution"], steps=steps,
                           device=self.device, mixed_precision=used,
                           on_first=lambda: (peaks.setdefault("first", self.peak_mb()), self.reset_peak()))
        out["floor"] = timing(times, warm - 1, peaks.get("first"), self.peak_mb())
        del pipe
        self.free()
        pipe, clock = self.fresh_pipe(), None
        self.reset_peak()
        clock = StepClock(self.device, on_first=lambda: (peaks.setdefault("cached_first", self.peak_mb()),
                                                         self.reset_peak()))
        self.train(cfg, pipe, Spy(), [clock])
        out["cached"] = timing(clock.times, warm - 1, peaks.get("cached_first"), self.peak_mb())
        del pipe
        f, c = out["floor"], out["cached"]
        out["ratio_s_per_step"] = round(c["s_per_step"] / f["s_per_step"], 3)
        if self.cuda:
            out["ratio_peak_vram_steps"] = round(c["peak_vram_steps_mb"] / f["peak_vram_steps_mb"], 3)
            out["ratio_peak_vram"] = round(max(c["peak_vram_mb"], c["peak_vram_steps_mb"])
                                           / max(f["peak_vram_mb"], f["peak_vram_steps_mb"]), 3)
        out["goal_ratio_s_per_step"] = SPEED_GOAL[self.p["case"]]
        out["within_goal"] = out["ratio_s_per_step"] <= out["goal_ratio_s_per_step"]
        out["note"] = ("peak_vram_mb: from the start to step 1's end (set-up, latent cache, step 1); "
                       "peak_vram_steps_mb: steps 2..N. The cached run also holds the VAE and text encoder.")
        out["checks"] = {"measured": _check(all(math.isfinite(x["s_per_step"]) and x["s_per_step"] > 0
                                                for x in (f, c)), "both loops timed")}
        return out

    # ---- the whole run

    def watchdog(self) -> None:
        """A daemon thread: at time_limit + HARD_MARGIN_S, record the running section as failed (hung), write the
        JSON and the table, and exit 1, so the command always ends inside the machine's command limit."""
        hard = self.p["time_limit"] + HARD_MARGIN_S
        while self.elapsed() < hard:
            time.sleep(1.0)
        cur = self.current
        if cur is not None:
            name, rec, t = cur
            rec.update(status="fail", reason=f"still running at the hard limit ({hard:.0f} s): stopped by the watchdog",
                       elapsed_s=round(time.perf_counter() - t, 1), over_budget=True)
            if name in VARIANTS:
                self.report["variants"][name] = rec
            else:
                self.report[name] = rec
        print(f"[watchdog] {hard:.0f} s reached; writing what was measured and exiting", flush=True)
        try:
            self.finish()
        finally:
            sys.stdout.flush(), sys.stderr.flush()  # os._exit does not flush a piped stdout
            os._exit(1)

    def run(self) -> int:
        threading.Thread(target=self.watchdog, daemon=True).start()
        b = self.p["budgets"]
        self.report["setup"] = self.section("setup", b["setup"], self.setup)
        self.write()
        if self.report["setup"]["status"] != "pass":
            return self.finish()
        selected = [v.strip() for v in self.args.variants.split(",")] if self.args.variants else list(VARIANTS)
        for name in VARIANTS:
            if name not in selected:
                self.report["variants"][name] = {"status": "skipped", "reason": "not selected (--variants)",
                                                 "skip_kind": "selected"}
                continue
            budget = b["variant_gc"] if "grad_ckpt" in name else b["variant"]
            self.report["variants"][name] = self.section(name, budget, self.variant, name, VARIANTS[name])
            self.write()
        for name, fn in (("resume", self.resume), ("speed", self.speed)):
            if name in self.args.skip:
                self.report[name] = {"status": "skipped", "reason": "not selected (--skip)", "skip_kind": "selected"}
                continue
            self.report[name] = self.section(name, b[name], fn)
            self.write()
        return self.finish()

    def finish(self) -> int:
        # Not from the watchdog (self.current set): a section may still be using the weights.
        if getattr(self, "base", None) is not None and self.current is None and self.report["setup"]["status"] == "pass":
            now = self.base_fingerprint()
            ok = now == self.fingerprint
            self.report["setup"]["checks"]["base_untouched"] = _check(
                ok, "the original weights every run copies are unchanged at the end" if ok else
                f"the original weights changed during the run: {self.fingerprint} -> {now}")
            if not ok:
                self.report["setup"].update(status="fail", reason="base_untouched: the original weights changed")
        sections = {"setup": self.report["setup"], **self.report["variants"],
                    **{k: self.report[k] for k in ("resume", "speed") if self.report[k]}}
        failed = [k for k, s in sections.items() if s.get("status") == "fail"]
        timed_out = [k for k, s in sections.items() if s.get("skip_kind") == "time"]
        skipped = {k: s["reason"] for k, s in sections.items() if s.get("status") == "skipped"}
        status = "fail" if failed else "incomplete" if timed_out else "pass"
        self.report["summary"] = {"status": status, "passed": [k for k, s in sections.items()
                                                               if s.get("status") == "pass"],
                                  "failed": failed, "skipped": skipped}
        self.report["complete"] = True
        self.write()
        print_table(self.report)
        print(f"JSON: {self.out}")
        return {"pass": 0, "fail": 1, "incomplete": 3}[status]


def _check(ok, detail) -> dict:
    return {"ok": bool(ok), "detail": detail}


# Self-attention over a single token: the softmax is 1 whatever q and k are, so their LoRA gets no gradient. The
# SD1.5 UNet's mid block sees a 1x1 latent at 64 px (64 / 8 / 2**3), the dry run's size.
SINGLE_TOKEN_QK = re.compile(r"^mid_block\.attentions\.\d+\.transformer_blocks\.\d+\.attn1\.to_[qk]\.")


def lora_moved(init: dict | None, now: dict, resolution: int = 512) -> dict:
    if not init:
        return _check(False, "the LoRA's initial weights were not captured")
    if init.keys() != now.keys():
        return _check(False, f"LoRA keys differ: {len(init)} at init, {len(now)} after")
    moved = [k for k in now if not torch_equal(init[k], now[k])]
    exempt = [k for k in now if resolution <= 64 and SINGLE_TOKEN_QK.match(k) and k not in moved]
    change = math.sqrt(sum(float((now[k] - init[k]).double().pow(2).sum()) for k in now))
    note = f" ({len(exempt)} mid-block self-attention q/k tensors cannot move at {resolution} px: one token)" \
        if exempt else ""
    return _check(len(moved) + len(exempt) == len(now),
                  f"{len(moved)}/{len(now)} LoRA tensors changed; ||delta|| = {change:.3g}{note}")


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def frozen_identical(base, pipe) -> dict:
    """The trained pipeline's frozen weights are the originals, bit for bit, in the dtype the run holds them in
    (casting fp32 to fp16/bf16 rounds the same way on CPU and GPU)."""
    import torch

    bad, n = [], 0
    for name in ("unet", "vae", "text_encoder"):
        got = {k.replace(".base_layer", ""): v for k, v in getattr(pipe, name).state_dict().items() if "lora_" not in k}
        want = getattr(base, name).state_dict()
        if got.keys() != want.keys():
            bad.append(f"{name}: keys differ ({len(got)} vs {len(want)})")
            continue
        for k, w in want.items():
            g = got[k]
            n += 1
            w = w.to(g.device, g.dtype) if w.is_floating_point() else w.to(g.device)
            if not torch.equal(g, w):
                bad.append(f"{name}.{k}")
    return _check(not bad, f"{n - len(bad)}/{n} frozen tensors identical" + (f"; changed: {bad[:5]}" if bad else ""))


def timing(times: list[float], warm: int, peak_first, peak_steps) -> dict:
    steady = times[max(warm, 0):] or times
    return {"s_per_step": round(statistics.median(steady), 5), "steps_timed": len(steady),
            "peak_vram_mb": peak_first, "peak_vram_steps_mb": peak_steps}


# --------------------------------------------------------------------------- output

def print_table(r: dict) -> None:
    rows = [("section", "status", "time", "budget", "s/step", "peak VRAM", "detail")]

    def vram(mb):
        return f"{mb / 1024:.1f} GB" if mb is not None else "-"

    def add(name, s, sps="-", peak=None, detail=""):
        if s.get("status") == "skipped":
            detail = s.get("reason") or ""
        elif s.get("status") == "fail":
            detail = (s.get("reason") or "")[:150]
        rows.append((name, s.get("status", "?"), f"{s.get('elapsed_s', 0):.1f}s" if "elapsed_s" in s else "-",
                     f"{s['budget_s']:.0f}s" if "budget_s" in s else "-", sps, vram(peak), detail))

    s = r["setup"]
    add("setup", s, detail=f"{s.get('model', '')}, {s.get('images', '?')} images, built in {s.get('build_s', '?')} s")
    for name, v in r["variants"].items():
        d = ""
        if v.get("losses"):
            d = (f"{v['mixed_precision']}: loss {min(v['losses']):.4f}..{max(v['losses']):.4f}, "
                 + v["checks"]["lora_changed"]["detail"].split(";")[0])
            if v.get("scaler_final_scale") is not None:
                d += f", scale {v['scaler_final_scale']:g}"
        add(name, v, f"{v['s_per_step_median']:.3f}" if v.get("s_per_step_median") else "-", v.get("peak_vram_mb"), d)
    if r["resume"]:
        v = r["resume"]
        d = (f"{v['mixed_precision']}: rel diff {v['lora_rel_diff']:.2g} (tol {v['tolerance']:g}, run-to-run "
             f"{v['repeat_lora_rel_diff']:.2g}), bitwise {v['bitwise_identical']}") if "lora_rel_diff" in v else ""
        add("resume", v, detail=d)
    if r["speed"]:
        v = r["speed"]
        if "floor" in v:
            add("speed floor", v, f"{v['floor']['s_per_step']:.3f}", v["floor"]["peak_vram_steps_mb"],
                f"{v['mixed_precision']}, bare UNet fwd+bwd+AdamW")
            add("speed cached", v, f"{v['cached']['s_per_step']:.3f}", v["cached"]["peak_vram_steps_mb"],
                f"cached/floor {v['ratio_s_per_step']:.3f}x s/step (goal <= {v['goal_ratio_s_per_step']})"
                + (f", {v['ratio_peak_vram_steps']:.3f}x VRAM" if "ratio_peak_vram_steps" in v else ""))
        else:
            add("speed", v)
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    print()
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + str(row[6]))
    sm = r["summary"]
    env = r["environment"]
    print(f"\n{sm['status'].upper()}: {len(sm['passed'])} passed, {len(sm['failed'])} failed, {len(sm['skipped'])} "
          f"skipped; {r['elapsed_s']:.0f} s on {env.get('gpu_name', env['device'])} (torch {env['torch']})")


def default_out(dry_run: bool, name: str) -> Path:
    """A GPU run's JSON goes to bench/results/ (kept with the code); a dry run's is a code-path check, not a result,
    so it goes to a work folder outside the source tree."""
    if dry_run:
        return Path(tempfile.gettempdir()) / "sd-adverb-lora-bench" / f"gpu_check_{name}.json"
    return REPO / "bench" / "results" / f"gpu_check_{name}.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the same code path on CPU with the tiny model (< 1 min)")
    ap.add_argument("--out", help="the JSON file (default: bench/results/gpu_check_<gpu-name>.json; --dry-run: "
                                  "<temp folder>/sd-adverb-lora-bench/gpu_check_cpu-dry-run.json)")
    ap.add_argument("--time-limit", type=float, help="seconds for the whole run; a section that would not fit is "
                                                     "skipped and the run is incomplete (default: 480 GPU, 170 CPU)")
    ap.add_argument("--steps", type=int, help="steps per variant (default: 30 GPU, 4 dry run)")
    ap.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out: resume,speed")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for the dry run (default 1)")
    ap.add_argument("--workdir", help="where runs and the latent cache go (default: a temporary folder)")
    args = ap.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.variants and not set(v.strip() for v in args.variants.split(",")) <= set(VARIANTS):
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}")

    import torch

    if args.dry_run:
        device = torch.device("cpu")
        # One thread: on a small shared CPU, torch's default (one per core) spins against the other load and is
        # several times slower; the dry run checks the code path, not the speed.
        torch.set_num_threads(args.threads or 1)
    elif torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        print("no CUDA device: run on a GPU machine, or use --dry-run for the CPU dry run", file=sys.stderr)
        return 2
    profile = copy.deepcopy(PROFILES["dry" if args.dry_run else "gpu"])
    if args.time_limit:
        profile["time_limit"] = args.time_limit
    if args.steps:
        profile["steps"] = args.steps
    name = "cpu-dry-run" if args.dry_run else slug(torch.cuda.get_device_name(device))
    out = Path(args.out) if args.out else default_out(args.dry_run, name)
    print(f"gpu_check: {'DRY RUN on CPU' if args.dry_run else torch.cuda.get_device_name(device)}, "
          f"{profile['case']} model, {profile['resolution']} px, batch {profile['batch']}, {profile['steps']} steps "
          f"per variant, time limit {profile['time_limit']:.0f} s -> {out}", flush=True)
    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="gpu_check_")))
        return Checker(args, profile, device, out, workdir).run()


if __name__ == "__main__":
    sys.exit(main())
