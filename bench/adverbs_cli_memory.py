"""Peak memory of `python -m trainer adverbs` on a small and a 5x larger input: flat when it streams.

    .venv/bin/python bench/adverbs_cli_memory.py [--n 20000] [--factor 5] [--tree PATH] [--reference PATH] [--out DIR]

Runs the command (``--no-cache``, automatic workers) from the checkout `--tree` (default: this one; pass
another checkout to compare an older version) on `--n` and `--n * --factor` real COCO val2017 captions
(repeated as needed, made distinct with a number), sampling every 0.2 s the resident memory of the command and of its helper processes
(/proc, so Linux only). Reported: the peaks of the main process and of all processes together, and the
ratio large/small; 1.0 means memory does not grow with the input. JSON goes to --out (default: a
temporary folder). `--reference PATH`: also run another checkout (an older version) on the same inputs,
alternating with this one, and print the time and memory ratios against it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT.parent / "shared" / "data" / "coco" / "captions_val2017.json"


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        todo += kids
    return found


def measure(tree: Path, lines_file: Path) -> dict:
    """Wall time and peak RSS (main process, all processes) of one run of the command."""
    cmd = [sys.executable, "-m", "trainer", "adverbs", "--no-cache", str(lines_file)]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main_peak = total_peak = 0
    while p.poll() is None:
        main = _rss_kb(p.pid)
        total = main + sum(_rss_kb(c) for c in _descendants(p.pid))
        main_peak, total_peak = max(main_peak, main), max(total_peak, total)
        time.sleep(0.2)
    err = p.stderr.read().decode()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err}")
    return {"seconds": time.perf_counter() - t, "main_peak_mb": main_peak / 1024, "all_peak_mb": total_peak / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--factor", type=int, default=5)
    ap.add_argument("--tree", default=str(ROOT), help="the checkout whose `python -m trainer` runs")
    ap.add_argument("--reference", default=None, help="another checkout to run on the same inputs, for ratios")
    ap.add_argument("--captions", default=str(COCO), help="a COCO caption file (default: ../shared/data's val2017)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    coco = Path(args.captions)
    if not coco.is_file():
        raise SystemExit(f"needs real captions: {coco} does not exist (pass --captions)")
    captions = [" ".join(a["caption"].split()) for a in json.loads(coco.read_text())["annotations"]]
    trees = {"tree": Path(args.tree), **({"reference": Path(args.reference)} if args.reference else {})}
    results: dict = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for k, n in enumerate((args.n, args.n * args.factor)):
            f = Path(tmp) / f"{n}.txt"
            # Repeats made distinct (a number added), so neither version can filter a repeated caption once only.
            f.write_text("".join(captions[i % len(captions)] + (f" ({i // len(captions)})" if i >= len(captions) else "")
                                 + "\n" for i in range(n)), encoding="utf-8")
            for name in (list(trees) if k % 2 == 0 else list(reversed(trees))):  # alternate who runs first
                r = results[name][n] = measure(trees[name], f)
                print(f"{name:9s} {n:>8,} lines: {r['seconds']:6.1f} s, peak main {r['main_peak_mb']:6.0f} MB, "
                      f"all processes {r['all_peak_mb']:6.0f} MB", flush=True)
    keys = ("main_peak_mb", "all_peak_mb")
    growth = {name: {k: res[args.n * args.factor][k] / res[args.n][k] for k in keys} for name, res in results.items()}
    for name, g in growth.items():
        print(f"{name}: x{args.factor} input -> main x{g['main_peak_mb']:.2f}, all processes x{g['all_peak_mb']:.2f}")
    vs_reference = None
    if args.reference:
        vs_reference = {str(n): {k: results["tree"][n][k] / results["reference"][n][k] for k in ("seconds", *keys)}
                        for n in results["tree"]}
        for n, v in vs_reference.items():
            print(f"tree / reference at {int(n):,} lines: time x{v['seconds']:.2f}, main x{v['main_peak_mb']:.2f}, "
                  f"all processes x{v['all_peak_mb']:.2f}")
    print("load average %.2f %.2f %.2f" % os.getloadavg())
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adverbs_cli_memory-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "adverbs_cli_memory.json").write_text(json.dumps(
        {"trees": {k: str(v) for k, v in trees.items()},
         "runs": {name: {str(n): v for n, v in res.items()} for name, res in results.items()},
         "growth_large_to_small": growth, "tree_to_reference": vs_reference}, indent=1))
    print(f"wrote {out / 'adverbs_cli_memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
