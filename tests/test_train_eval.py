"""Adverb sensitivity at validation time: logged to metrics.jsonl and TensorBoard, base reference, same training."""
from __future__ import annotations

import json
import math

import pytest
import torch

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)

PROMPT = "a dog running quickly on the beach"
ADVERBS = ["very", "slowly"]


def _run(tmp_path, captions, *overrides):
    from trainer.models.base import BaseModel
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import train

    pipe = build_tiny_pipeline("sd15")
    cfg = tiny_config(tmp_path, "train.max_train_steps=4", "validation.steps=2", "validation.num_inference_steps=1",
                      "dataset.adverb_mode=safe", "logging.tensorboard=true", f"validation.prompts=[{PROMPT}]",
                      f"validation.eval_adverbs=[{', '.join(ADVERBS)}]", *overrides)
    result = train(cfg, caption_set=captions, model=BaseModel(pipe, "sd1", "epsilon", "tiny"), progress=False)
    return pipe, result


def test_validation_logs_adverb_sensitivity(tmp_path, train_captions):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.generate.evaluate import adverb_sensitivity, pairs_from_captions
    from trainer.models.lora import lora_state_dict
    from trainer.training.metrics import read_metrics
    from trainer.models.tiny import build_tiny_pipeline

    pipe, result = _run(tmp_path / "eval", train_captions, "validation.adverb_eval=true")
    lines = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    evals = [r for r in lines if any(k.startswith("eval/") for k in r)]
    # Validation at step 2 and at the end (step 4); the training records keep their schema.
    assert [r["step"] for r in evals] == [2, 4]
    assert [r["step"] for r in read_metrics(result.metrics_path)] == [1, 2, 3, 4]
    assert all(set(r) == {"step", "epoch", "loss", "loss_step", "lr", "step_time", "samples_per_sec",
                          "grad_norm"}
               for r in lines if r not in evals)
    keys = {"eval/adverb_sensitivity", "eval/adverb_sensitivity_relative", "eval/adverb_sensitivity_base",
            "eval/adverb_sensitivity_relative_base"}
    for r in evals:
        assert set(r) == {"step", *keys} and all(math.isfinite(r[k]) and r[k] > 0 for k in keys)

    # The pairs are the prompt without its adverb (the caption filter's version) with each adverb inserted.
    pairs = pairs_from_captions(["a dog running on the beach"], ADVERBS)
    assert pairs[0].with_adverb == "a dog very running on the beach"
    measure = dict(seed=0, resolution=64)
    # The base reference is the untrained model's number; the logged LoRA number is the trained UNet's.
    base = adverb_sensitivity(build_tiny_pipeline("sd15"), pairs, **measure)
    assert evals[0]["eval/adverb_sensitivity_base"] == pytest.approx(base["overall"], rel=1e-5)
    assert evals[0]["eval/adverb_sensitivity_relative_base"] == pytest.approx(base["overall_relative"], rel=1e-5)
    assert evals[1]["eval/adverb_sensitivity_base"] == evals[0]["eval/adverb_sensitivity_base"]
    trained = adverb_sensitivity(pipe, pairs, **measure)
    assert evals[1]["eval/adverb_sensitivity"] == pytest.approx(trained["overall"], rel=1e-5)
    assert evals[1]["eval/adverb_sensitivity"] != pytest.approx(base["overall"], rel=1e-4)  # the LoRA moved it

    events = EventAccumulator(str(result.output_dir / "logs"))
    events.Reload()
    assert keys <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("eval/adverb_sensitivity")]
    assert logged == [(r["step"], pytest.approx(r["eval/adverb_sensitivity"], rel=1e-6)) for r in evals]

    # Measuring does not touch training: same LoRA weights as a run that only samples images.
    plain_pipe, plain = _run(tmp_path / "plain", train_captions, "validation.adverb_eval=false")
    assert plain.losses == result.losses
    want, got = lora_state_dict(plain_pipe.unet), lora_state_dict(pipe.unet)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert not any("eval/" in line for line in plain.metrics_path.read_text().splitlines())


@pytest.mark.parametrize("overrides, message", [
    (["validation.adverb_eval=true"], "validation.adverb_eval=true needs validation.prompts"),
    (["validation.adverb_eval=true", "validation.prompts=[a cat]", "validation.eval_adverbs=[]"],
     "validation.eval_adverbs must be a non-empty list"),
])
def test_adverb_eval_config_errors(overrides, message):
    from trainer.training.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=message):
        config_from_dict({}, overrides)
