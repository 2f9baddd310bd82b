"""What a run reports: the tqdm bar, `logs/metrics.jsonl`, TensorBoard events and the loss-curve PNG."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_path, write_text


class MetricsLogger:
    """Progress bar plus metrics sinks; on non-main processes only a no-op."""

    def __init__(self, output_dir: str | Path, total_steps: int, start_step: int = 0, *, enabled: bool = True,
                 tensorboard: bool = True, progress: bool = True):
        self.enabled = enabled
        self.logs_dir = Path(output_dir) / "logs"
        self.jsonl_path = self.logs_dir / "metrics.jsonl"
        self.writer = self.bar = self._jsonl = None
        if not enabled:
            return
        from tqdm.auto import tqdm

        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._drop_after(start_step)
        self._jsonl = self.jsonl_path.open("a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step hides events a resumed run is about to write again (a new run: all earlier ones).
                self.writer = SummaryWriter(str(self.logs_dir), purge_step=start_step + 1)
            except ImportError as e:
                print(f"TensorBoard logging off: {e}")
        self.bar = tqdm(total=total_steps, initial=start_step, desc="training", unit="step", disable=not progress,
                        dynamic_ncols=True)

    def _drop_after(self, step: int) -> None:
        """On resume, forget records past the checkpoint (written by the run that was stopped); a new run
        (step 0) forgets them all. A damaged line (a run killed while writing it) is dropped with a warning."""
        if not self.jsonl_path.is_file():
            return
        records, bad = parse_jsonl(self.jsonl_path)
        for n in bad:
            self.write(f"warning: {self.jsonl_path} line {n} is not a complete JSON record (a run stopped while "
                       "writing it?); dropped")
        keep = [line for line, rec in records if rec.get("step", 0) <= step]
        write_text(self.jsonl_path, "".join(line + "\n" for line in keep))

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def log(self, record: dict) -> None:
        """One logged step: a line in metrics.jsonl, TensorBoard scalars, and the bar's postfix."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        step = record["step"]
        if self.writer is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and v is not None:
                    self.writer.add_scalar(f"train/{k}", v, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                 step_s=f"{record['step_time']:.3f}", refresh=False)

    def log_eval(self, record: dict) -> None:
        """Evaluation numbers at a step (`{"step", "eval/...": float}`): a line in metrics.jsonl, TensorBoard scalars."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(k, v, record["step"])

    def log_images(self, tag: str, images, step: int) -> None:
        """Validation images (PIL) into TensorBoard."""
        if self.writer is None:
            return
        import numpy as np

        for i, im in enumerate(images):
            self.writer.add_image(f"{tag}/{i}", np.asarray(im), step, dataformats="HWC")

    def write(self, text: str) -> None:
        """A message that does not break the bar."""
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        tqdm.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self._jsonl is not None:
            self._jsonl.close()


def parse_jsonl(path: str | Path) -> tuple[list[tuple[str, dict]], list[int]]:
    """([(line, record)] of the lines that are JSON objects, [numbers of the lines that are not]) of a metrics.jsonl.

    A run killed mid-write leaves half a last line: it is reported, not fatal.
    """
    good, bad = [], []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad.append(n)
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step", 0), int):
            good.append((line, rec))
        else:
            bad.append(n)
    return good, bad


def read_metrics(path: str | Path) -> list[dict]:
    """Training records of a metrics.jsonl (not `eval/` ones), last one per step wins (a resumed run rewrites
    steps); damaged lines are skipped."""
    by_step = {}
    for _, rec in parse_jsonl(path)[0]:
        if "loss" not in rec or "step" not in rec:  # an evaluation record (`log_eval`) shares a training step
            continue
        by_step[rec["step"]] = rec
    return [by_step[s] for s in sorted(by_step)]


def ema_smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's scalar smoothing: an exponential moving average, debiased so it starts at the first value."""
    out, acc = [], 0.0
    for i, v in enumerate(values, 1):
        acc = acc * weight + (1 - weight) * v
        out.append(acc / (1 - weight ** i))
    return out


def smoothing_weight(n_points: int) -> float:
    """TensorBoard's default 0.6 for short curves, up to 0.95 for long ones (one that averages ~√n points)."""
    return min(0.95, max(0.6, 1 - 1 / max(n_points, 1) ** 0.5))


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path, title: str = "training loss") -> Path | None:
    """Loss against step: each logged loss thin, its EMA smoothing (as TensorBoard draws it) on top; None when
    nothing was logged."""
    records = read_metrics(metrics_path) if Path(metrics_path).is_file() else []
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or inside ComfyUI
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    weight = smoothing_weight(len(loss))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    raw_color, smooth_color = "#1f77b4", "#d62728"
    if len(loss) > 2:
        ax.plot(steps, loss, color=raw_color, alpha=0.3, linewidth=0.8, label="loss (mean of each logging window)")
        ax.plot(steps, ema_smooth(loss, weight), color=smooth_color, linewidth=2.0, label=f"smoothed (EMA {weight:.2f})")
    else:  # too few points to smooth: a smoothed line would only hide the raw one
        ax.plot(steps, loss, color=raw_color, marker=".", label="loss")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(png_path)
