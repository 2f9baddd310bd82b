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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import StepClock, build_pipeline, floor_loop, sample_captions  # noqa: E402

CASES = {
    # name: (resolution, batch, steps, warm-up steps)
    "tiny": (64, 4, 30, 5),
    "sd15": (256, 1, 10, 3),
}


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

    reso, batch, steps, warm = CASES[case]
    cfg = config_for(case, workdir, mode)
    pipe = build_pipeline(case)
    if mode == "floor":
        times = floor_loop(pipe, cfg.train, batch=batch, resolution=reso, steps=steps)
    else:
        from trainer.models.base import BaseModel
        from trainer.training.train import train

        clock = StepClock()
        train(cfg, caption_set=sample_captions(workdir, max(8, batch * 4)), callbacks=[clock],
              model=BaseModel(pipe, "sd1", "epsilon", case), progress=False,
              overwrite=True)  # --repeats: each repeat is a fresh run in the same work folder
        times = clock.times
    # Both clocks start at step 1's end (step 1 is not timed), hence warm - 1.
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
