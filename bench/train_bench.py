"""Training speed against its floor and against per-step encoding, measured in one run.

    .venv/bin/python bench/train_bench.py                 # both cases
    .venv/bin/python bench/train_bench.py --case tiny     # tiny model, 64 px, batch 4
    .venv/bin/python bench/train_bench.py --case sd15     # SD1.5-sized random UNet/VAE/CLIP-L, 256 px, batch 1

Three modes per case, each in its own process (so peak RSS is per mode):
  floor      a bare loop: noise, UNet forward + backward, AdamW, on pre-made latents and embeddings, same LoRA;
  cached     `trainer.training.train.train` with latents and text embeddings encoded once before step 1 (the default);
  reference  `train` with `dataset.cache_latents=false`: every step reads the images and runs the VAE and text
             encoder, as diffusers' train_text_to_image_lora.py and kohya's train_network.py do without caching.
Prints steady-state median seconds per step (the first steps are warm-up and not counted), peak RSS, and the
ratios cached/floor, reference/cached, RSS cached/floor; and the machine's load average. Goals (issue 5):
cached <= 1.05x floor at SD1.5 size (<= 1.15x tiny), reference >= 1.3x cached, RSS <= 1.1x floor.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (resolution, batch, steps, warm-up steps)
    "tiny": (64, 4, 30, 5),
    "sd15": (256, 1, 10, 3),
}


def build_pipeline(case: str):
    """The tiny pipeline, or SD1.5's real architecture with random weights (no downloads)."""
    sys.path.insert(0, str(REPO))
    from trainer.models.tiny import build_tiny_pipeline

    if case == "tiny":
        return build_tiny_pipeline("sd15")
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from trainer.models.tiny import SCHEDULER

    torch.manual_seed(0)
    unet = UNet2DConditionModel(cross_attention_dim=768, sample_size=64)  # the defaults are SD1.5's blocks
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512, scaling_factor=0.18215)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                num_attention_heads=12, max_position_embeddings=77,
                                                hidden_act="quick_gelu", projection_dim=768))
    tiny = build_tiny_pipeline("sd15")
    from diffusers import DDIMScheduler

    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tiny.tokenizer,
                                   scheduler=DDIMScheduler(**SCHEDULER), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def config_for(case: str, workdir: Path, mode: str):
    from trainer.training.config import config_from_dict

    reso, batch, steps, _ = CASES[case]
    return config_from_dict({}, [
        "model_name=bench", f"dataset.resolution={reso}", "dataset.buckets=false", "dataset.adverb_mode=none",
        f"dataset.cache_latents={'false' if mode == 'reference' else 'true'}", f"dataset.cache_dir={workdir / 'cache'}",
        f"train.max_train_steps={steps}", f"train.train_batch_size={batch}", "train.learning_rate=1e-4",
        f"logging.output_dir={workdir / mode}", "logging.save_steps=0", f"logging.log_steps={steps}",
        "logging.tensorboard=false",
    ])


def run_mode(case: str, mode: str, workdir: Path) -> dict:
    """One mode in this process: per-step wall times and peak RSS."""
    import resource

    import torch

    sys.path.insert(0, str(REPO))
    from trainer.captions.captionset import CaptionRecord, CaptionSet
    from trainer.models.base import BaseModel
    from trainer.captions.sample_dataset import make_sample_coco

    reso, batch, steps, warm = CASES[case]
    cfg = config_for(case, workdir, mode)
    pipe = build_pipeline(case)
    times: list[float] = []
    if mode == "floor":
        from diffusers import DDPMScheduler

        from trainer.models.lora import add_lora, trainable_parameters
        from trainer.training.train import diffusion_loss

        unet = pipe.unet
        unet.requires_grad_(False)
        torch.manual_seed(cfg.train.seed)
        add_lora(unet, cfg.train)
        unet.train()
        params = trainable_parameters(unet)
        opt = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.adam_weight_decay)
        sched = DDPMScheduler.from_config(pipe.scheduler.config)
        latents = torch.randn(batch, 4, reso // 8, reso // 8)
        emb = torch.randn(batch, 77, pipe.text_encoder.config.hidden_size)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = diffusion_loss(unet, sched, latents, emb, gen, "epsilon")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - t0)
    else:
        from trainer.training.train import train

        root = make_sample_coco(workdir / "data", n_images=max(8, batch * 4))
        images = sorted((root / "images" / "train2014").glob("*.jpg"))
        captions = CaptionSet(tuple(CaptionRecord(str(p), f"a drawn scene number {i}") for i, p in enumerate(images)))

        class Clock:
            last = None

            def on_step(self, step, total, loss, logs):
                now = time.perf_counter()
                if self.last is not None:
                    times.append(now - self.last)
                self.last = now

        # The first step's time is not seen by the clock (it starts at step 1's end), hence warm - 1.
        train(cfg, caption_set=captions, callbacks=[Clock()], model=BaseModel(pipe, "sd1", "epsilon", case),
              progress=False)
        warm -= 1
    steady = times[warm:]
    return {"case": case, "mode": mode, "median_s": statistics.median(steady), "steps": len(steady),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per process (default: torch's choice; 1 is steadier on a busy machine)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the three modes this many times, interleaved, and keep each mode's best median "
                         "(load on a shared machine drifts between runs)")
    ap.add_argument("--mode", choices=["floor", "cached", "reference"], help=argparse.SUPPRESS)  # child process
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.mode:
        print("RESULT " + json.dumps(run_mode(args.case, args.mode, Path(args.workdir))))
        return 0

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()}")
    for case in (CASES if args.case == "all" else [args.case]):
        results: dict[str, dict] = {}
        with tempfile.TemporaryDirectory() as tmp:
            # The cache is built by the first cached run (before its step 1, so not timed); the reference never
            # reads it.
            for _ in range(args.repeats):
                for mode in ("floor", "cached", "reference"):
                    proc = subprocess.run([sys.executable, __file__, "--case", case, "--mode", mode, "--workdir", tmp,
                                           "--threads", str(args.threads)], capture_output=True, text=True)
                    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                    if proc.returncode or line is None:
                        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                        return 1
                    r = json.loads(line[7:])
                    if mode not in results or r["median_s"] < results[mode]["median_s"]:
                        results[mode] = r
        reso, batch, _, _ = CASES[case]
        print(f"\n{case}: {reso}px, batch {batch}  (load average now {os.getloadavg()[0]:.2f})")
        for mode, r in results.items():
            print(f"  {mode:<10} {r['median_s']:.4f} s/step (median of {r['steps']})   peak RSS {r['peak_rss_mb']:.0f} MB")
        f, c, ref = (results[m] for m in ("floor", "cached", "reference"))
        print(f"  cached / floor       {c['median_s'] / f['median_s']:.3f}x  (goal <= {1.05 if case == 'sd15' else 1.15})")
        print(f"  reference / cached   {ref['median_s'] / c['median_s']:.3f}x  (goal >= 1.3)")
        print(f"  RSS cached / floor   {c['peak_rss_mb'] / f['peak_rss_mb']:.3f}x  (goal <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
