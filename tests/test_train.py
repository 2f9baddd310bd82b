"""Training on the tiny real model: LoRA learns, the base stays bit-identical, exact resume, stops, cache."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)


def _base_state(module) -> dict:
    """State dict without the LoRA tensors and with PEFT's `.base_layer` level removed."""
    return {k.replace(".base_layer", ""): v for k, v in module.state_dict().items() if "lora_" not in k}


def test_training_changes_only_the_lora(tmp_path, train_captions):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from trainer.models.lora import lora_state_dict
    from trainer.models.base import BaseModel
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import train

    pipe = build_tiny_pipeline("sd15")
    reference = build_tiny_pipeline("sd15")  # same seed: the weights before training
    cfg = tiny_config(tmp_path, "train.max_train_steps=3", "logging.save_steps=1", "logging.checkpoints_total_limit=2",
                      "logging.tensorboard=true")
    result = train(cfg, caption_set=train_captions, model=BaseModel(pipe, "sd1", "epsilon", "tiny"), progress=False)

    assert not result.stopped_early and result.final_step == 3
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    lora = lora_state_dict(pipe.unet)
    assert lora and all(v.dtype == torch.float32 for v in lora.values())
    # B starts at zero: it moved. Except the mid block's self-attention q and k: at 64 px its latent is 1x1, and
    # attention over a single token is softmax = 1 whatever q and k are, so their gradient is zero in exact
    # arithmetic; not asserted either way, as torch's fused CPU attention backward leaves ~2e-7 of rounding there
    # on some CPUs (AVX-512) and AdamW turns any non-zero gradient into a full step.
    single_token = ("mid_block.attentions.0.transformer_blocks.0.attn1.to_q.",
                    "mid_block.attentions.0.transformer_blocks.0.attn1.to_k.")
    assert all(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k and not k.startswith(single_token))
    for name, module, ref in (("unet", pipe.unet, reference.unet), ("vae", pipe.vae, reference.vae),
                              ("text_encoder", pipe.text_encoder, reference.text_encoder)):
        got, want = _base_state(module), ref.state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), f"{name} base weights changed"
    assert not any(p.requires_grad for p in pipe.vae.parameters())
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())
    assert not pipe.vae.training and not pipe.text_encoder.training

    out = result.output_dir
    assert (out / "config.yaml").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]  # keep last 2
    assert not list(out.glob(".checkpoint-*"))  # no temp folders left behind
    for ck in (out / "checkpoint-3", out):
        assert (ck / "adverb_lora.safetensors").is_file() and (ck / "adapter" / "adapter_config.json").is_file()
    assert torch.equal(load_file(out / "checkpoint-3" / "lora_state.safetensors")["down_blocks.0.attentions.0."
                       "transformer_blocks.0.attn1.to_q.lora_B.weight"],
                       lora["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"])
    records = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert {"step", "epoch", "loss", "lr", "step_time", "samples_per_sec", "grad_norm"} <= r.keys()
        assert r["step_time"] > 0 and r["samples_per_sec"] > 0 and r["grad_norm"] > 0
    assert [r["loss"] for r in records] == pytest.approx(result.losses)
    assert all(r["loss_step"] == r["loss"] for r in records)  # logged every step: the window is that step
    assert list((out / "logs").glob("events.out.tfevents.*"))
    assert result.loss_plot.is_file() and result.loss_plot.stat().st_size > 1000

    with safe_open(result.lora_path, "pt") as f:
        meta = f.metadata()
        assert any(k.startswith("lora_unet_") for k in f.keys())
    assert meta["ss_network_dim"] == "4" and meta["ss_base_model_version"] == "sd_v1"
    assert json.loads(meta["ss_caption_filter"]) == {"mode": "none"}
    assert meta["ss_steps"] == "3" and meta["ss_seed"] == "42"


def test_webui_file_holds_the_trained_delta(tmp_path, train_captions):
    """The exported webui LoRA, read back by `convert`, gives the same ΔW per layer as the trained adapter."""
    from trainer.models.lora import lora_state_dict
    from trainer.models.base import BaseModel
    from trainer.siblings import sibling
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import train

    convert = sibling("convert")
    pipe = build_tiny_pipeline("sd15")
    cfg = tiny_config(tmp_path, "train.max_train_steps=1", "train.lora_alpha=8", "train.lora_targets=kohya")
    result = train(cfg, caption_set=train_captions, model=BaseModel(pipe, "sd1", "epsilon", "tiny"), progress=False)
    ours = lora_state_dict(pipe.unet)
    sd, peft_cfg = convert.to_peft_state_dict(convert.load_any(result.lora_path), "unet", fold_alpha=True)
    modules = {k[: -len(".lora_A.weight")] for k in ours if k.endswith(".lora_A.weight")}
    assert modules == {k[: -len(".lora_A.weight")] for k in sd if k.endswith(".lora_A.weight")}
    assert any(m.endswith("ff.net.2") for m in modules)
    for m in modules:
        def delta(up, down):  # 1x1 convs (SD1 proj_in/proj_out) have 4-D factors
            return up.float().reshape(up.shape[0], -1) @ down.float().reshape(down.shape[0], -1)

        want = 2.0 * delta(ours[f"{m}.lora_B.weight"], ours[f"{m}.lora_A.weight"])  # alpha 8 / rank 4
        got = delta(sd[f"{m}.lora_B.weight"], sd[f"{m}.lora_A.weight"])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("variant, prediction", [("sd15", "epsilon"), ("sd2", "v_prediction")])
@pytest.mark.parametrize("snr_gamma", [0.0, 5.0])
def test_loss_against_hand_computation(variant, prediction, snr_gamma):
    from diffusers import DDPMScheduler

    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import diffusion_loss, diffusion_target

    pipe = build_tiny_pipeline(variant)
    assert pipe.scheduler.config.prediction_type == prediction
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    torch.manual_seed(0)
    x0 = torch.randn(3, 4, 8, 8)
    emb = torch.randn(3, 77, 32)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        loss = diffusion_loss(pipe.unet, sched, x0, emb, gen, prediction, snr_gamma)

    # The same draws, by hand: noise then timesteps, DDPM forward process, target, MSE.
    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 1000, (3,), generator=gen)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2  # scaled_linear
    a = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    torch.testing.assert_close(diffusion_target(sched, x0, noise, t, prediction), target, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        pred = pipe.unet(noisy, t, emb).sample
    per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    if snr_gamma:
        snr = (a / (1 - a)).view(-1)
        per_sample = per_sample * torch.clamp(snr, max=snr_gamma) / (snr + 1 if prediction == "v_prediction" else snr)
    torch.testing.assert_close(loss, per_sample.mean(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_exact_resume_and_cache_hit(tmp_path, train_captions, model):
    """8 steps straight == stopped at 3 (callback) + resumed to 8: same LoRA, optimizer and logged losses.

    tiny-sdxl: the same with the pooled text and the per-image size conditioning read from the cache."""
    from safetensors.torch import load_file

    from trainer.training.train import train

    common = (f"model_name={model}", "train.max_train_steps=8", "train.train_batch_size=3", "train.gradient_accumulation_steps=2",
              "dataset.random_flip=true", "train.lora_dropout=0.1", "train.lr_scheduler=cosine",
              "train.lr_warmup_steps=2", "logging.save_steps=0", "logging.log_steps=3",
              f"dataset.cache_dir={tmp_path / 'cache'}")
    full = train(tiny_config(tmp_path / "a", *common), caption_set=train_captions, progress=False)
    assert full.cache_stats == {"latents_total": 24, "latents_encoded": 24, "text_total": 12, "text_encoded": 12}

    class StopAt3:  # should_stop is asked once per step, after the step ran
        def __init__(self):
            self.seen, self.asked = [], 0

        def on_step(self, step, total, loss, logs):
            self.seen.append((step, total, loss))

        def should_stop(self):
            self.asked += 1
            return self.asked == 3

    cb = StopAt3()
    cfg_b = tiny_config(tmp_path / "b", *common)
    part = train(cfg_b, caption_set=train_captions, callbacks=[cb], progress=False)
    assert part.stopped_early and part.stop_reason == "callback" and part.final_step == 3
    assert [s for s, _, _ in cb.seen] == [1, 2, 3] and cb.seen[0][1] == 8
    assert cb.seen[0][2] is None and cb.seen[2][2] == part.losses[0]  # the loss is known once logged
    assert part.lora_path == part.checkpoint_dir / "adverb_lora.safetensors" and part.lora_path.is_file()
    assert part.cache_stats["latents_encoded"] == 0 and part.cache_stats["text_encoded"] == 0  # cache hit

    resumed = train(cfg_b, caption_set=train_captions, resume="latest", progress=False)
    assert resumed.final_step == 8 and not resumed.stopped_early
    a = load_file(full.checkpoint_dir / "lora_state.safetensors")
    b = load_file(resumed.checkpoint_dir / "lora_state.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert part.losses + resumed.losses == full.losses  # bit-for-bit the same losses, in order
    opt_a = torch.load(full.checkpoint_dir / "optimizer.pt", weights_only=True)
    opt_b = torch.load(resumed.checkpoint_dir / "optimizer.pt", weights_only=True)
    assert all(torch.equal(opt_a["state"][i]["exp_avg_sq"], opt_b["state"][i]["exp_avg_sq"]) for i in opt_a["state"])
    records = [json.loads(line) for line in (resumed.metrics_path).read_text().splitlines()]
    full_records = [json.loads(line) for line in (full.metrics_path).read_text().splitlines()]
    # logged every 3 steps, at the stop (3) and at the end: once per step across the two sessions
    assert [r["step"] for r in records] == [r["step"] for r in full_records] == [3, 6, 8]
    assert [(r["loss"], r["loss_step"]) for r in records] == [(r["loss"], r["loss_step"]) for r in full_records]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, train_captions):
    from trainer.training.train import NonFiniteLossError, train

    cfg = tiny_config(tmp_path, "train.learning_rate=1e30", "train.max_grad_norm=0", "logging.save_steps=1",
                      "train.max_train_steps=4")
    with pytest.raises(NonFiniteLossError, match="checkpoint-1"):
        train(cfg, caption_set=train_captions, progress=False)
    out = tmp_path / "run"
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (out / "adverb_lora.safetensors").exists()


def test_sigint_saves_a_checkpoint_and_stops(tmp_path, train_captions):
    from trainer.training.train import train

    class Interrupt:
        def on_step(self, step, total, loss, logs):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    cfg = tiny_config(tmp_path, "train.max_train_steps=6", "logging.save_steps=0")
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup / a background job
    result = train(cfg, caption_set=train_captions, callbacks=[Interrupt()], progress=False)
    assert result.stopped_early and result.stop_reason == "SIGINT" and result.final_step == 3
    assert (tmp_path / "run" / "checkpoint-3" / "trainer_state.json").is_file()
    assert json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # the handler it had before is restored


def test_cli_train_then_resume_from_processed_set(tmp_path, train_captions, capsys):
    from trainer.__main__ import main

    # `prepare`'s layout: <processed_root>/<split>_<mode>/captions.jsonl
    train_captions.save(tmp_path / "processed" / "train2014_none" / "captions.jsonl")
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(tmp_path, f"dataset.processed_root={tmp_path / 'processed'}",
                                  "train.max_train_steps=2").to_yaml())
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    assert (tmp_path / "run" / "checkpoint-2").is_dir()
    # No --config: the run's own config.yaml is used; more steps are an override.
    assert main(["train", "--resume", str(tmp_path / "run" / "checkpoint-2"), "train.max_train_steps=3",
                 "--no-progress"]) == 0
    state = json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["step"] == 3
    # `--resume KEY=VALUE`: an override, not a checkpoint path; the newest checkpoint (3) is resumed.
    assert main(["train", "--resume", "train.max_train_steps=4", f"logging.output_dir={tmp_path / 'run'}",
                 "--no-progress"]) == 0
    assert f"resumed from {tmp_path / 'run' / 'checkpoint-3'} at step 3" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4
    assert main(["train", "--config", str(config), "train.lora_rnak=3"]) == 2  # config error: exit code 2


def test_data_source_errors(tmp_path, train_captions):
    from trainer.training.config import ConfigError
    from trainer.training.train import load_caption_set

    with pytest.raises(ConfigError, match="no training data; set dataset.raw_root"):
        load_caption_set(tiny_config(tmp_path))
    (tmp_path / "p" / "a").mkdir(parents=True)
    (tmp_path / "p" / "b").mkdir()
    train_captions.save(tmp_path / "p" / "a" / "captions.jsonl")
    train_captions.save(tmp_path / "p" / "b" / "captions.jsonl")
    with pytest.raises(ConfigError, match=r"no train2014_none/captions.jsonl and not exactly one caption set here "
                                          r"\(a/captions.jsonl, b/captions.jsonl\)"):
        load_caption_set(tiny_config(tmp_path, f"dataset.processed_root={tmp_path / 'p'}"))
    one = load_caption_set(tiny_config(tmp_path, f"dataset.processed_root={tmp_path / 'p' / 'a' / 'captions.jsonl'}"))
    assert len(one) == len(train_captions)


def test_missing_image_is_named(tmp_path, train_captions):
    from trainer.captions.captionset import CaptionRecord
    from trainer.training.dataset import build_samples

    broken = train_captions.with_records([*train_captions.records, CaptionRecord(str(tmp_path / "gone.jpg"), "x",
                                                                                 source_id="coco:99")])
    with pytest.raises(FileNotFoundError, match=r"caption record 12 \(coco:99\): image .*gone.jpg does not exist"):
        build_samples(broken, 64)


def test_train_sd2_v_prediction_from_a_single_file(tmp_path, train_captions):
    """A ComfyUI/webui-style single .safetensors checkpoint (SD2 layout, v-prediction) trains like a folder."""
    from safetensors import safe_open

    from trainer.models.single_file import save_single_file
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import train

    ckpt = save_single_file(build_tiny_pipeline("sd2"), tmp_path / "tiny-sd2.safetensors", save_config=True)
    cfg = tiny_config(tmp_path, f"model_name={ckpt}", "train.max_train_steps=2", "train.lora_targets=kohya")
    result = train(cfg, caption_set=train_captions, progress=False)
    assert result.final_step == 2 and all(0 < x < 10 for x in result.losses)
    with safe_open(result.lora_path, "pt") as f:
        meta = f.metadata()
        assert any("proj_in" in k for k in f.keys())  # SD2's linear proj_in got a LoRA
    assert meta["ss_v2"] == "True" and meta["ss_v_parameterization"] == "True"
    assert meta["ss_base_model_version"] == "sd_v2_v"  # kohya's name for SD2 v-parameterization


@pytest.mark.parametrize("precision, half", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_keeps_lora_fp32_and_frozen_parts_half(tmp_path, train_captions, precision, half):
    from trainer.models.base import BaseModel
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.train import train

    pipe = build_tiny_pipeline("sd15")
    cfg = tiny_config(tmp_path, "train.max_train_steps=1", f"train.mixed_precision={precision}")
    result = train(cfg, caption_set=train_captions, model=BaseModel(pipe, "sd1", "epsilon", "tiny"), progress=False)
    assert all(0 < x < 10 for x in result.losses)
    params = dict(pipe.unet.named_parameters())
    assert all(p.dtype == torch.float32 for n, p in params.items() if "lora_" in n)
    assert all(p.dtype == half for n, p in params.items() if "lora_" not in n)
    assert pipe.text_encoder.dtype == half
    # SD's VAE overflows in fp16 (config force_upcast): it stays fp32 there, half under bf16.
    assert pipe.vae.dtype == (torch.float32 if precision == "fp16" else half)


@pytest.mark.parametrize("requested, device, bf16_ok, expected", [
    ("auto", "cpu", False, "no"), ("auto", "cuda", True, "bf16"), ("auto", "cuda", False, "fp16"),
    ("auto", "mps", False, "fp16"), ("fp16", "cuda", True, "fp16"), ("no", "cuda", True, "no"),
])
def test_auto_precision_is_half_on_gpus_and_fp32_on_cpu(requested, device, bf16_ok, expected):
    from trainer.training.train import choose_precision

    assert choose_precision(requested, device, bf16_ok) == (expected, "")


def test_default_precision_trains_fp32_on_cpu_and_explicit_fp16_warns(capsys):
    from trainer.training.config import TrainConfig
    from trainer.training.train import make_accelerator

    assert TrainConfig().train.mixed_precision == "auto"
    accelerator, dtype = make_accelerator("auto")  # this machine has no GPU
    assert (accelerator.mixed_precision, dtype) == ("no", torch.float32)
    assert "warning" not in capsys.readouterr().out
    accelerator, dtype = make_accelerator("fp16")  # explicit: honoured, with the cost said
    assert (accelerator.mixed_precision, dtype) == ("fp16", torch.float16)
    out = capsys.readouterr().out
    assert "train.mixed_precision=fp16 on CPU" in out and "hundreds of times slower" in out and "auto" in out


def test_checkpoint_keeps_the_fp16_gradient_scaler(tmp_path):
    """fp16's scale decides which steps are skipped after an overflow: without it a resume is not exact."""
    from trainer.training import checkpoint as ckpt

    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1)
    for _ in range(3):  # grow the scale away from its initial value
        scaler.scale(param.sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    common = dict(lora_state={"w": param.detach()}, optimizer=optimizer, lr_scheduler=scheduler,
                  rng_state={"torch": torch.get_rng_state()}, position={"epoch": 0, "batch": 3})
    with_scaler = ckpt.load_checkpoint(ckpt.save_checkpoint(tmp_path / "a", 3, scaler=scaler, **common))
    assert with_scaler["scaler"]["scale"] == scaler.get_scale() == 2.0 ** 13
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(with_scaler["scaler"])
    assert restored.get_scale() == scaler.get_scale()
    assert ckpt.load_checkpoint(ckpt.save_checkpoint(tmp_path / "b", 3, **common))["scaler"] is None


def test_resume_accepts_a_run_folder_as_its_newest_checkpoint(tmp_path):
    """`--resume RUN_FOLDER` = its newest complete checkpoint (half-written `.tmp` and stateless folders skipped)."""
    from trainer.training.checkpoint import resolve_resume

    run = tmp_path / "run"
    for step in (2, 10, 4):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (run / "checkpoint-12").mkdir()  # no trainer_state.json: incomplete
    assert resolve_resume(run, str(run)) == run / "checkpoint-10"
    assert resolve_resume(run, str(run / "checkpoint-4")) == run / "checkpoint-4"
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder"):
        resolve_resume(run, str(tmp_path / "empty"))
