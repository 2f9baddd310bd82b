"""Adverb filter throughput on real COCO captions, against the naive full-pipeline `nlp.pipe` in the same run.

    .venv/bin/python bench/adverbs_throughput.py [--n 20000] [--workers 2]

Rows: naive (full pipeline, pos_ == ADV), our filter in one process (tagger only), our filter sharded
over worker processes, and a cached rerun. Ratios are against the naive row.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.adverbs import AdverbFilter, load_spacy_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=Path, default=ROOT.parent / "shared" / "data" / "coco" / "captions_val2017.json")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    caps = [a["caption"] for a in json.loads(args.coco.read_text(encoding="utf-8"))["annotations"]][: args.n]
    n = len(caps)
    import spacy

    name = load_spacy_model().meta["lang"] + "_" + load_spacy_model().meta["name"]
    full = spacy.load(name)
    t = time.perf_counter()
    naive = [" ".join(tok.text for tok in doc if tok.pos_ != "ADV") for doc in full.pipe(caps, batch_size=256)]
    t_naive = time.perf_counter() - t
    rows = [("naive full pipeline", t_naive)]

    f = AdverbFilter("safe")
    f.nlp  # model load is not part of the throughput
    t = time.perf_counter()
    f.filter_texts(caps, workers=1, cache_dir=False)
    rows.append(("safe, tagger-only, 1 process", time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        f.filter_texts(caps, workers=args.workers, cache_dir=cache)
        rows.append((f"safe, {args.workers} worker processes (+cache write)", time.perf_counter() - t))
        t = time.perf_counter()
        f.filter_texts(caps, workers=args.workers, cache_dir=cache)
        rows.append(("safe, cached rerun", time.perf_counter() - t))
    print(f"{n} COCO captions ({len(set(caps))} distinct)")
    for label, secs in rows:
        print(f"{label:<45}{secs:8.2f} s {n / secs:10.0f} captions/s {t_naive / secs:7.2f}x naive")
    est = 414113 / (n / rows[2][1])
    print(f"estimated 414k COCO train2014 captions with {args.workers} workers: {est / 60:.1f} min")
    del naive
    return 0


if __name__ == "__main__":
    sys.exit(main())
