"""Adverb filter throughput on real COCO captions, against the naive full-pipeline `nlp.pipe` in the same run.

    .venv/bin/python bench/adverbs_throughput.py [--n 20000] [--compare-n 20000] [--workers 2] [--repeats 3]
                                                 [--batch-sizes 256,1000,2000] [--skip naive,batch,workers,cache]

The machine may be shared, so every comparison is interleaved block by block (naive, ours, naive,
ours ... with the order flipped each block) and the load average is printed next to each section.
Sections:
1. naive full pipeline (`pos_ == "ADV"`) vs our `safe` filter, tagger-only, one process: ratio;
2. `nlp.pipe` batch sizes for our filter, interleaved the same way;
3. like with like at each process count (and, for W > 1, against naive at its own fastest count): the naive full pipeline with `nlp.pipe(n_process=W)` (spaCy's
   own multiprocessing, forked workers) against our filter with W processes (this one plus W-1 spawned
   helpers, each loads the model and returns strings), both over the same `--n` captions (val2017
   repeated as needed; no de-duplication) with process start-up included, `--repeats` times with the
   order alternated; each ratio is printed per repeat with the median and the spread (the machine may
   be shared), and the extrapolation to the 414,113 COCO train2014 captions;
4. `filter_texts` with a fresh cache, then the cached rerun.
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

from trainer.captions.adverbs import BATCH_SIZE, AdverbFilter, available_cores  # noqa: E402

COCO_TRAIN2014_CAPTIONS = 414_113


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def interleaved(blocks, runners: dict) -> dict:
    """Total seconds per runner over `blocks`, alternating the runners' order block by block."""
    totals = dict.fromkeys(runners, 0.0)
    names = list(runners)
    for k, block in enumerate(blocks):
        for name in names if k % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            runners[name](block)
            totals[name] += time.perf_counter() - t
    return totals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=Path, default=ROOT.parent / "shared" / "data" / "coco" / "captions_val2017.json")
    ap.add_argument("--n", type=int, default=20000, help="captions for the worker/extrapolation section")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the worker section (median and spread)")
    ap.add_argument("--compare-n", type=int, default=20000, help="captions for the naive comparison")
    ap.add_argument("--block", type=int, default=2500, help="captions per interleaved block")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-sizes", default=f"{BATCH_SIZE},1000,2000")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: naive,batch,workers,cache")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    caps = [a["caption"] for a in json.loads(args.coco.read_text(encoding="utf-8"))["annotations"]]
    big = (caps * (args.n // len(caps) + 1))[: args.n]
    compare = big[: args.compare_n]
    blocks = [compare[i:i + args.block] for i in range(0, len(compare), args.block)]
    print(f"{len(caps)} COCO val2017 captions; {os.cpu_count()} cores, {available_cores()} usable; {load()}")

    f = AdverbFilter("safe")
    f.nlp  # model loading is not part of the throughput
    import spacy

    full = spacy.load(f.settings["model"])  # every pipe: tok2vec, tagger, parser, attribute_ruler, lemmatizer, ner

    def naive(block, n_process=1):
        return [" ".join(t.text for t in doc if t.pos_ != "ADV")
                for doc in full.pipe(block, batch_size=256, n_process=n_process)]

    if "naive" not in skip:
        t = interleaved(blocks, {"naive": naive, "ours": lambda b: f._run(b, workers=1, progress=False)})
        n = len(compare)
        print(f"\n[1] {n} captions, {len(blocks)} interleaved blocks; {load()}")
        print(f"  naive full pipeline         {n / t['naive']:7.0f} captions/s")
        print(f"  safe, 1 proc (parse on demand){n / t['ours']:7.0f} captions/s  {t['naive'] / t['ours']:5.2f}x naive")

    if "batch" not in skip:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        t = interleaved(blocks, {bs: (lambda b, bs=bs: f._filter_raw(b, batch_size=bs)) for bs in sizes})
        print(f"\n[2] nlp.pipe batch size, {len(compare)} captions interleaved; {load()}")
        for bs in sizes:
            print(f"  batch {bs:<6} {len(compare) / t[bs]:7.0f} captions/s  {t[sizes[0]] / t[bs]:5.2f}x batch {sizes[0]}")

    if "workers" not in skip:
        print(f"\n[3] {len(big)} captions (val2017 repeated, not de-duplicated), naive and ours at the same process "
              f"count, start-up included, {args.repeats} repeats; {load()}")
        rates, naive_best = {}, {}
        for w in sorted({1, args.workers}):
            runners = {"naive": lambda b, w=w: naive(b, n_process=w), "ours": lambda b, w=w: f._run(b, workers=w, progress=False)}
            ratios, ours_rates, naive_rates = [], [], []
            for r in range(args.repeats):
                t = interleaved([big], runners if r % 2 == 0 else dict(reversed(runners.items())))
                ratios.append(t["naive"] / t["ours"])
                ours_rates.append(len(big) / t["ours"])
                naive_rates.append(len(big) / t["naive"])
                print(f"  {w} process(es), repeat {r + 1}: naive {naive_rates[-1]:6.0f}/s  ours {ours_rates[-1]:6.0f}/s  "
                      f"{ratios[-1]:5.2f}x   ({load()})")
            rates[w] = statistics.median(ours_rates)
            naive_best[w] = statistics.median(naive_rates)
            print(f"  {w} process(es): ours / naive median {statistics.median(ratios):5.2f}x  "
                  f"(min {min(ratios):.2f}, max {max(ratios):.2f}); ours median {rates[w]:.0f} captions/s")
            if w > 1:  # the stricter reference too: naive at whichever process count was faster for it
                best_naive = max(naive_best.values())
                print(f"  {w} process(es): ours / naive at its fastest process count "
                      f"({max(naive_best, key=naive_best.get)}) {rates[w] / best_naive:5.2f}x (medians)")
        best = max(rates, key=rates.get)
        print(f"  estimated {COCO_TRAIN2014_CAPTIONS} COCO train2014 captions: {COCO_TRAIN2014_CAPTIONS / rates[best] / 60:.1f} min "
              f"({best} process(es); goal < 4 min)")

    if "cache" not in skip:
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            f.filter_texts(caps, workers=None, cache_dir=cache)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            f.filter_texts(caps, workers=None, cache_dir=cache)
            again = time.perf_counter() - t0
        print(f"\n[4] filter_texts on {len(caps)} captions, automatic workers: first run {first:.1f} s "
              f"(+cache write), cached rerun {again:.2f} s; {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
