"""Cost of checking that every training image decodes, against reading its header only (the old check).

    .venv/bin/python bench/image_check.py [--n 200] [--size 640x480] [--repeats 3] [--out DIR]

Generates `--n` photo-like JPEGs (COCO's typical 640x480, quality 90) and times, per image, interleaved
and repeated (the machine may be shared):
- header: `Image.open(p).size` (what the loaders checked before; passes a truncated JPEG);
- full: `Image.open(p).load()` (a full decode);
- check: `trainer.captions.load_report.image_problem` (a full decode, JPEG at 1/8 scale via `draft`);
- check, threads: `keep_readable` over all of them (`CHECK_THREADS` threads).
Ratios are against `header` and `full` of the same run; the extrapolation to COCO train2014's 82,783
images uses the per-image time of `check, threads`. JSON goes to --out (default: a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COCO_TRAIN2014_IMAGES = 82_783


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):  # smooth gradients plus grain: about the entropy, so the decode work, of a photo
        base = np.stack([(x * (i + 1) / w * 255) % 256, y / h * 255, (x + y + 7 * i) % 256], -1)
        arr = (base + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for image_check.json (default: a temporary folder)")
    args = ap.parse_args()
    from PIL import Image

    from trainer.captions.load_report import CHECK_THREADS, LoadReport, image_problem, keep_readable

    def header(paths):
        for p in paths:
            with Image.open(p) as im:
                im.size

    def full(paths):
        for p in paths:
            with Image.open(p) as im:
                im.load()

    def check(paths):
        assert not any(image_problem(p) for p in paths)

    def check_threads(paths):
        assert len(keep_readable([(p, p, str(p)) for p in paths], LoadReport("bench"))) == len(paths)

    cases = {"header": header, "full": full, "check": check, "check, threads": check_threads}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.n, tuple(int(v) for v in args.size.split("x")))
        times: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(args.repeats):
            order = list(cases) if r % 2 == 0 else list(reversed(cases))
            for name in order:
                t = time.perf_counter()
                cases[name](paths)
                times[name].append((time.perf_counter() - t) / len(paths))
    ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    cores = os.cpu_count() or 1
    print(f"{args.n} JPEGs {args.size}, median of {args.repeats}; {cores} cores, {min(CHECK_THREADS, cores)} threads; "
          "load average %.2f %.2f %.2f" % os.getloadavg())
    for k, v in ms.items():
        print(f"  {k:15s} {v:7.3f} ms/image  x{v / ms['header']:7.1f} header  x{v / ms['full']:5.2f} full")
    coco_s = ms["check, threads"] * COCO_TRAIN2014_IMAGES / 1000
    print(f"  COCO train2014 ({COCO_TRAIN2014_IMAGES:,} images): check with threads ~{coco_s:.0f} s on this machine")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="image_check-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_check.json").write_text(json.dumps(
        {"n": args.n, "size": args.size, "cores": cores, "ms_per_image": ms,
         "ratio_to_header": {k: v / ms["header"] for k, v in ms.items()},
         "ratio_to_full": {k: v / ms["full"] for k, v in ms.items()}, "coco_train2014_seconds": coco_s}, indent=1))
    print(f"wrote {out / 'image_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
