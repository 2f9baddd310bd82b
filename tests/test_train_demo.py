"""The README's first command, end to end: `python -m trainer demo` (here with fewer steps and images)."""
from __future__ import annotations

import json
import shlex


def test_demo_end_to_end(tmp_path, capsys):
    from safetensors import safe_open

    from trainer.__main__ import main
    from trainer.captions.captionset import CaptionSet

    assert main(["demo", "--output", str(tmp_path / "demo"), "--steps", "12", "--images", "8", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "demo" / "run"
    lora = run / "demo_adverb_lora.safetensors"
    for path in (lora, run / "adapter" / "adapter_model.safetensors", run / "loss_curve.png", run / "config.yaml",
                 run / "logs" / "metrics.jsonl", run / "checkpoint-12" / "trainer_state.json"):
        assert path.is_file(), path
    # The summary says where the LoRA, the plot and the sample images are.
    for path in (lora, run / "adapter", run / "loss_curve.png", *sorted((run / "samples").glob("*.png"))):
        assert str(path) in printed, path

    # The LoRA is the tiny model's: the summary says so (in sd-webui it would load silently and change nothing) and
    # prints the one command for a real SD1.5 checkpoint, whose options the trainer's own config loader accepts.
    from trainer.training.config import load_config

    assert "<lora:demo_adverb_lora:1>" not in printed
    assert "for the tiny demo model only" in printed and "does NOT fit a real SD1.5 checkpoint" in printed
    command = next(ln.strip() for ln in printed.splitlines() if ln.strip().startswith("python -m trainer train "))
    words = shlex.split(command)
    cfg = load_config(words[words.index("--config") + 1], [w for w in words if "=" in w])
    assert cfg.model_name == "/path/to/v1-5-pruned-emaonly.safetensors" and cfg.dataset.raw_root == "/path/to/coco"
    assert f"{cfg.logging.output_dir}/{cfg.logging.name}.safetensors" in printed  # where that LoRA will be

    # The adverb filter ran: captions lost adverbs, originals kept, and the LoRA metadata says so.
    captions = CaptionSet.load(tmp_path / "demo" / "data" / "captions_train2014.filtered.jsonl")
    changed = [r for r in captions.records if r.original and r.original != r.caption]
    assert len(captions) == 40 and changed
    assert all(r.removed for r in changed)
    with safe_open(lora, "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["ss_caption_filter"])["mode"] == "safe"
    assert meta["ss_steps"] == "12"

    # A sample image of the prompt with and without its adverbs, and a finite logged loss.
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert samples == ["step-000012_p0-with-adverbs.png", "step-000012_p0-without-adverbs.png"]
    records = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) >= 2 and all(0 < x < 10 for x in losses)
    # The adverb-sensitivity evaluation ran at the end, for the LoRA and the base model.
    evals = [r for r in records if "eval/adverb_sensitivity" in r]
    assert evals and evals[-1]["step"] == 12 and evals[-1]["eval/adverb_sensitivity_base"] > 0

    # The run's config.yaml reproduces it: the resume command the summary prints continues the demo's run.
    assert main(["train", "--resume", str(run / "checkpoint-12"), "train.max_train_steps=14", "--no-progress"]) == 0
    assert (run / "checkpoint-14" / "trainer_state.json").is_file()


def test_demo_on_tiny_sdxl(tmp_path, capsys):
    """`python -m trainer demo --model tiny-sdxl`: the same pipeline on the SDXL-layout model, SDXL files out."""
    from safetensors import safe_open

    from trainer.__main__ import main

    assert main(["demo", "--model", "tiny-sdxl", "--output", str(tmp_path / "demo"), "--steps", "4", "--images", "4",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "training the tiny SDXL-layout UNet LoRA for 4 steps" in printed
    run = tmp_path / "demo" / "run"
    with safe_open(run / "demo_adverb_lora.safetensors", "pt") as f:
        assert f.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"
        assert any(k.startswith("lora_unet_input_blocks_4_1_") for k in f.keys())
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step-000004_p0-with-adverbs.png", "step-000004_p0-without-adverbs.png"]
