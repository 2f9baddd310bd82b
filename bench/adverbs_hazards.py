"""Hazard scan: every COCO val2017 caption in each mode, checked for the damage a removal must never do.

    python bench/adverbs_hazards.py [--coco FILE] [--max N] [--modes safe,all] [--no-net]

For each mode it prints the changed share, the captions where the rules alone produced damage
(`trainer.captions.hazards`: a/an disagreement, stranded next/close/near or preposition, doubled or
orphaned punctuation, broken contraction/possessive), how many of those the safety net caught (the
caption is then left unchanged), and removals per category. `--no-net` turns the safety net off, so
the damage counts are what the output would contain. Exit status 1 when any output has damage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from trainer.captions.adverbs import AdverbFilter, load_spacy_model  # noqa: E402
from trainer.captions.hazards import hazards  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=Path, default=SHARED / "coco" / "captions_val2017.json")
    ap.add_argument("--max", type=int, default=None, help="only the first N captions")
    ap.add_argument("--modes", default="safe,all")
    ap.add_argument("--no-net", action="store_true", help="turn the hazard safety net off")
    args = ap.parse_args()
    caps = [a["caption"] for a in json.loads(args.coco.read_text(encoding="utf-8"))["annotations"]][: args.max]
    nlp = load_spacy_model()
    damaged_total = 0
    for mode in args.modes.split(","):
        f = AdverbFilter(mode, model=nlp)
        f.check_hazards = not args.no_net
        t0 = time.perf_counter()
        res = f.filter_texts(caps, workers=1, cache_dir=False)
        secs = time.perf_counter() - t0
        bad = Counter()
        examples = {}
        for r in res:
            for h in hazards(r.original, r.text, [(s.start, s.end) for s in r.removed]):
                bad[h] += 1
                examples.setdefault(h, f"{r.original!r} -> {r.text!r}")
        damaged_total += sum(bad.values())
        cats = Counter(s.category for r in res for s in r.removed)
        print(f"{mode}: {len(caps)} captions in {secs:.1f} s, changed {sum(r.changed for r in res) / len(caps):.2%}, "
              f"damage in output: {sum(bad.values())}, caught by the safety net: {f.fallbacks}")
        print("  removed by category:", dict(cats.most_common()))
        for h, n in bad.most_common():
            print(f"  {h}: {n}  e.g. {examples[h]}")
    return 1 if damaged_total else 0


if __name__ == "__main__":
    sys.exit(main())
