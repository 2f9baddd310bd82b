"""Benchmark `python -m convert --to_webui` against diffusers' `convert_state_dict_to_kohya`, same input, same run.

Input: a random rank-128 (default) LoRA on every SD1.5-sized UNet attention/ff/proj module plus the CLIP-L text
encoder, fp16, written as a diffusers `pytorch_lora_weights.safetensors` (~150 MB) — the one input both tools take.
Each run is a fresh process with the same imports for both tools, the tools alternating which goes first; reported:
median (and min) seconds for read+convert+write (imports excluded) and the median peak RSS *added* by the
conversion (ru_maxrss minus the RSS after imports), as a ratio of the file size.

    .venv/bin/python bench/convert_bench.py [--rank 128] [--repeat 5] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
SD15_WIDTHS = [320] * 5 + [640] * 5 + [1280] * 6  # transformers per width: down 2, up 3 (+ mid at 1280)
CROSS = 768

# Both tools run in a fresh process after the same imports (so the same objects for the cyclic GC, the same
# allocator state), timed from reading the input to the output file being written and closed.
PRELUDE = """
import resource, sys, time
sys.path.insert(0, {repo!r})
from diffusers.utils import convert_state_dict_to_kohya
from safetensors.torch import load_file, save_file
from convert.__main__ import main
rss0 = int(open('/proc/self/statm').read().split()[1]) * {page} // 1024
t = time.perf_counter()
"""
OURS = PRELUDE + """
assert main(['--to_webui', {src!r}, '-o', {dst!r}, '--force']) == 0
dt = time.perf_counter() - t
print('RESULT', dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0)
"""
THEIRS = PRELUDE + """
save_file(convert_state_dict_to_kohya(load_file({src!r})), {dst!r})
dt = time.perf_counter() - t
print('RESULT', dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0)
"""


def sd15_modules():
    """(key, in, out) for every UNet attention/ff/proj module (diffusers paths, SD1.5 widths) and CLIP-L module."""
    sys.path.insert(0, str(REPO))
    from convert import keymap

    widths = iter(SD15_WIDTHS)
    out = []
    blocks = sorted({p.rsplit(".transformer_blocks", 1)[0].removesuffix(".proj_in")
                     for p, _ in keymap.unet_rows(keymap.SD_LAYOUT) if p.endswith(".proj_in")})
    order = [b for b in blocks if b.startswith("down")] + [b for b in blocks if b.startswith("up")] + ["mid_block.attentions.0"]
    for block in order:
        c = next(widths)
        t = f"{block}.transformer_blocks.0"
        out += [(f"{block}.proj_in", c, c), (f"{block}.proj_out", c, c)]
        out += [(f"{t}.attn1.{p}", c, c) for p in ("to_q", "to_k", "to_v", "to_out.0")]
        out += [(f"{t}.attn2.to_q", c, c), (f"{t}.attn2.to_k", CROSS, c), (f"{t}.attn2.to_v", CROSS, c),
                (f"{t}.attn2.to_out.0", c, c), (f"{t}.ff.net.0.proj", c, 8 * c), (f"{t}.ff.net.2", 4 * c, c)]
    unet = [("unet." + k, i, o) for k, i, o in out]
    te = []
    for layer in range(12):
        p = f"text_encoder.text_model.encoder.layers.{layer}"
        te += [(f"{p}.self_attn.{n}", 768, 768) for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
        te += [(f"{p}.mlp.fc1", 768, 3072), (f"{p}.mlp.fc2", 3072, 768)]
    return unet + te


def make_input(path: Path, rank: int) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {}
    for key, i, o in sd15_modules():
        sd[f"{key}.lora_A.weight"] = torch.randn(rank, i, generator=g, dtype=torch.float32).half()
        sd[f"{key}.lora_B.weight"] = torch.randn(o, rank, generator=g, dtype=torch.float32).half()
    meta = {f"{c}.{k}": v for c in ("unet", "text_encoder") for k, v in (("r", rank), ("lora_alpha", rank // 2))}
    save_file(sd, path, metadata={"format": "pt", "lora_adapter_metadata": json.dumps(meta)})


def run(code: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    line = next(li for li in out.stdout.splitlines() if li.startswith("RESULT"))
    _, seconds, kib = line.split()
    return float(seconds), int(kib) / 1024


def main() -> None:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5, help="runs per tool; the median is reported")
    ap.add_argument("--keep", help="write the files here instead of a temp dir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        src = work / "pytorch_lora_weights.safetensors"
        make_input(src, args.rank)
        size_mb = src.stat().st_size / 2**20
        page = os.sysconf("SC_PAGE_SIZE")
        runs: dict[str, list] = {"ours": [], "diffusers": []}
        tools = [("ours", OURS), ("diffusers", THEIRS)]
        for i in range(args.repeat):  # interleaved, alternating who goes first, each into a fresh path
            for name, template in tools if i % 2 == 0 else tools[::-1]:
                dst = work / f"{name}.safetensors"
                dst.unlink(missing_ok=True)
                runs[name].append(run(template.format(repo=str(REPO), src=str(src), dst=str(dst), page=page)))
        results = {name: (median(r[0] for r in rs), median(r[1] for r in rs)) for name, rs in runs.items()}
        print(f"input: {len(sd15_modules())} modules, rank {args.rank}, fp16, {size_mb:.0f} MB; {args.repeat} runs each")
        print(f"{'tool':10s} {'median s':>8s} {'min s':>6s} {'peak +RSS MB':>13s} {'RSS/file':>9s}  all seconds")
        for name, (sec, mb) in results.items():
            every = " ".join(f"{r[0]:.2f}" for r in runs[name])
            print(f"{name:10s} {sec:8.2f} {min(r[0] for r in runs[name]):6.2f} {mb:13.0f} {mb / size_mb:9.2f}  {every}")
        ours, theirs = results["ours"], results["diffusers"]
        print(f"time ratio ours/diffusers (medians): {ours[0] / theirs[0]:.2f} (goal <= 1.0); "
              f"peak RSS ours/file: {ours[1] / size_mb:.2f} (goal < 1.5)")
        # Same tensors, different alpha: diffusers writes alpha = rank, halving this alpha = rank/2 LoRA's strength.
        from safetensors import safe_open

        with safe_open(str(work / "ours.safetensors"), "pt") as a, safe_open(str(work / "diffusers.safetensors"), "pt") as b:
            k = "attentions_0_transformer_blocks_0_attn2_to_k.alpha"
            ka, kb = (next(n for n in f.keys() if n.endswith(k)) for f in (a, b))
            print(f"alpha of {ka}: ours {float(a.get_tensor(ka)):g}, diffusers {float(b.get_tensor(kb)):g}")


if __name__ == "__main__":
    main()
