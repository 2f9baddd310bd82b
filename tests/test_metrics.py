"""What a run reports about its loss: the window mean and the step's loss, and the smoothed loss curve."""
from __future__ import annotations

import json
import random

import pytest
import torch


def test_logged_loss_is_the_window_mean_and_loss_step_the_last_step():
    from trainer.training.train import LossMeter, make_accelerator

    accelerator, _ = make_accelerator("no")
    meter = LossMeter(accelerator.device)
    for step_losses in ([1.0, 3.0], [5.0, 7.0], [0.5, 0.5]):  # 2 micro-batches per step, each added as loss / 2
        for x in step_losses:
            meter.add(torch.tensor(x / 2))
        meter.end_step()
    mean, last, step_time = meter.read(accelerator)
    assert mean == pytest.approx((2.0 + 6.0 + 0.5) / 3) and last == pytest.approx(0.5) and step_time > 0
    meter.add(torch.tensor(4.0))
    meter.end_step()
    assert meter.read(accelerator)[:2] == (pytest.approx(4.0), pytest.approx(4.0))  # the window started over


def test_ema_smoothing_is_tensorboards():
    from trainer.training.metrics import ema_smooth, smoothing_weight

    # TensorBoard: last = last * w + (1 - w) * v, debiased by 1 - w^i
    assert ema_smooth([1.0, 2.0, 3.0], 0.6) == pytest.approx([1.0, 1.04 / 0.64, 1.824 / 0.784])
    assert ema_smooth([2.0] * 5, 0.9) == pytest.approx([2.0] * 5)  # no bias towards 0 at the start
    assert smoothing_weight(3) == 0.6 and smoothing_weight(10_000) == 0.95


def test_loss_curve_draws_the_smoothed_line_over_the_raw_one(tmp_path):
    import numpy as np
    from PIL import Image

    from trainer.training.metrics import ema_smooth, plot_loss_curve, smoothing_weight

    rng = random.Random(0)
    loss = [0.3 + 0.2 * rng.random() for _ in range(200)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": v}) + "\n"
                                                    for i, v in enumerate(loss)))
    png = plot_loss_curve(tmp_path / "metrics.jsonl", tmp_path / "curve.png")
    smooth = ema_smooth(loss, smoothing_weight(len(loss)))
    assert np.std(smooth[20:]) < np.std(loss) / 3  # the smoothed line shows the trend, not the noise
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)  # the smoothed line, opaque on top
    pale_blue = (rgb[..., 2] > 200) & (rgb[..., 0] > 140) & (rgb[..., 0] < 230)  # the raw line, thin and light
    assert red.sum() > 500 and pale_blue.sum() > 500
