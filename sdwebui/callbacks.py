"""What the tab's buttons call: plain values in (the controls' values), plain values out (text, table rows, the
loss curve's table). Every error becomes a message in the tab, never a traceback page; tests call these directly."""
from __future__ import annotations

import functools
import traceback

from . import host, jobs
from .jobs import TabError

PREVIEW_HEADERS = ["before", "after", "removed"]


def _error_text(e: Exception) -> str:
    if isinstance(e, TabError):
        return f"**Error:** {e}"
    traceback.print_exc()  # sd-webui's console keeps the details; the tab gets one line
    return f"**Unexpected error:** {type(e).__name__}: {e} (details in sd-webui's console)"


def shown_in_tab(on_error):
    """Decorator: an exception becomes `on_error(message)`, the callback's outputs with the message in place."""
    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                return on_error(_error_text(e))
        return guarded
    return wrap


def status_banner() -> str:
    """Which Python runs the trainer, or what it lacks (the tab still loads; its buttons then say so)."""
    missing = jobs.dependency_message()
    if missing:
        return f"**Trainer unavailable.** {missing}"
    return f"Trainer: `{jobs.trainer_python()}` · LoRAs go to `{host.lora_dir()}`"


# --------------------------------------------------------------------------- Captions

@shown_in_tab(lambda msg: ([], msg))
def preview(source, split, mode, keep, remove, n_show=20, max_images=200):
    """(the first `n_show` changed captions as [before, after, removed] rows, the counts as Markdown)."""
    p = jobs.preview_captions(source, split, mode, keep, remove, int(max_images or 0))
    rows = [list(r) for r in p.changed[: int(n_show or 20)]]
    removed = ", ".join(f"{w} ×{n}" for w, n in list(p.removed.items())[:40]) or "nothing"
    report = (f"**{p.loaded}** captions loaded, **{p.bad}** bad items skipped, **{p.changed_count}** changed "
              f"({100.0 * p.changed_count / max(p.loaded, 1):.1f} %).\n\nRemoved: {removed}")
    return rows, report


@shown_in_tab(lambda msg: (msg, None))
def prepare(source, split, mode, keep, remove, out_root=""):
    """(a message, the prepared captions.jsonl for the Train part's caption set; None = leave it as it is)."""
    path = jobs.prepare_captions(source, split, mode, keep, remove, out_root or "")
    return (f"Wrote **{path}** (report: `{path.parent / 'report.md'}`). The Train part now trains on it."), str(path)


# --------------------------------------------------------------------------- Train

def checkpoint_choices() -> list[str]:
    return sorted(host.checkpoints())


def _fmt_seconds(s) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def progress_text(p: jobs.Progress) -> str:
    """One status line (step/total, loss, s/step, ETA) and the run's message."""
    loss = f"{p.loss:.4f}" if p.loss is not None else "–"
    sps = f"{p.seconds_per_step:.2f}" if p.seconds_per_step is not None else "–"
    return (f"**step {p.step}/{p.total}** · loss {loss} · {sps} s/step · ETA {_fmt_seconds(p.eta_seconds)}"
            f"\n\n{p.message}")


LOSS_CURVE_X, LOSS_CURVE_Y, LOSS_CURVE_SERIES = "step", "loss", "curve"  # the loss plot's columns (layout.py)


def ema_smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing, as the trainer's loss_curve.png draws it (trainer.training.metrics.ema_smooth; the
    tab may not import the trainer): an exponential moving average, debiased so it starts at the first value."""
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc = acc * weight + (1 - weight) * v
        out.append(acc / (1 - weight ** i))
    return out


def smoothing_weight(n_points: int) -> float:
    """The trainer's choice: TensorBoard's 0.6 for short curves, up to 0.95 (about √n points averaged)."""
    return min(0.95, max(0.6, 1 - 1 / max(n_points, 1) ** 0.5))


def loss_curve(losses: list[tuple[int, float]]):
    """The loss curve for gradio's LinePlot: a pandas DataFrame (step, loss, curve), the raw loss and its smoothed
    line as two curves; None with fewer than 2 points. gradio draws it in the page at the page's size, with
    axes and a legend (pandas comes with gradio)."""
    if len(losses) < 2:
        return None
    import pandas as pd

    steps, values = [s for s, _ in losses], [v for _, v in losses]
    weight = smoothing_weight(len(values))
    smoothed = ema_smooth(values, weight)
    raw_name, smooth_name = "loss", f"smoothed (EMA {weight:.2f})"
    return pd.DataFrame({
        LOSS_CURVE_X: steps + steps,
        LOSS_CURVE_Y: values + smoothed,
        LOSS_CURVE_SERIES: [raw_name] * len(steps) + [smooth_name] * len(steps),
    })


def _updates(run: jobs.TrainingRun, interval: float):
    for p in jobs.watch(run, interval):
        yield progress_text(p), loss_curve(p.losses)


def start(base_model, base_path, name, captions, source, split, mode, steps, learning_rate, batch, grad_accum, rank,
          alpha, resolution, precision, seed, save_every, validation_prompt, free_vram, max_images=0, sample_steps=20,
          keep="", remove="", interval=jobs.WATCH_INTERVAL):
    """Start (or resume) training and yield (status Markdown, loss curve for the LinePlot) until it ends."""
    try:
        settings = jobs.TrainSettings(
            base_model=(base_path or "").strip() or (base_model or ""), name=name, captions=captions or "",
            source=source or "", split=split, mode=mode, steps=steps, learning_rate=learning_rate, batch=batch,
            grad_accum=grad_accum, rank=rank, alpha=alpha, resolution=resolution, precision=precision, seed=seed,
            save_every=save_every, validation_prompt=validation_prompt or "", free_vram=bool(free_vram),
            max_images=int(max_images or 0), sample_steps=int(sample_steps or 20), keep=keep or "",
            remove=remove or "")
        run = jobs.start_training(settings)
    except Exception as e:
        yield _error_text(e), None
        return
    try:
        yield from _updates(run, interval)
    except Exception as e:
        yield _error_text(e), None


def watch_current(interval=jobs.WATCH_INTERVAL):
    """Show the current (or last) run again, e.g. after the page was reloaded."""
    run = jobs.current_run()
    if run is None:
        yield "No training run since sd-webui started.", None
        return
    yield from _updates(run, interval)


@shown_in_tab(lambda msg: msg)
def cancel():
    return jobs.cancel_training()


# --------------------------------------------------------------------------- Convert

@shown_in_tab(lambda msg: ("", "", msg))
def convert(source, name="", overwrite=False):
    """(inspect before, inspect after, message) for converting `source` into sd-webui's Lora folder."""
    before, after, written = jobs.convert_to_lora_folder(source, name, bool(overwrite))
    refreshed = host.refresh_lora_list()
    note = "sd-webui's Lora list was refreshed." if refreshed else "Refresh sd-webui's Lora tab to see it."
    return before, after, f"Wrote **{written[0]}** with " + ", ".join(p.name for p in written[1:]) + f". {note}"
