"""Hazard scan: every COCO val2017 caption in each mode, checked for the damage a removal must never do.

    python bench/adverbs_hazards.py [--coco FILE] [--max N] [--modes safe,all,decorrelate] [--no-net]

For each mode it prints the changed share, the captions where the rules alone produced damage
(`trainer.captions.hazards`: a/an disagreement, stranded next/close/near or preposition, doubled or
orphaned punctuation, broken contraction/possessive, and the grammar breaks of issue #23: a lost
"enough"/"too" before a to-infinitive, an "of" without its head, a noun without its particle, two verbs
run together, a degree word without its head), how many of those the safety net caught (the
caption is then left unchanged), and removals per category. `--no-net` turns the safety net off, so
the damage counts are what the output would contain. Exit status 1 when any output has damage.
Mode decorrelate (trainer.captions.decorrelate) checks every one of its K variants per caption against the
original: the adverbs it substitutes and inserts must not damage a caption either (`--no-net` turns its own
hazard fallback off too).
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
    ap.add_argument("--modes", default="safe,all,decorrelate")
    ap.add_argument("--variants", type=int, default=4, help="decorrelate: variants per caption")
    ap.add_argument("--no-net", action="store_true", help="turn the hazard safety net off")
    args = ap.parse_args()
    caps = [a["caption"] for a in json.loads(args.coco.read_text(encoding="utf-8"))["annotations"]][: args.max]
    nlp = load_spacy_model()
    damaged_total = 0
    for mode in args.modes.split(","):
        if mode == "decorrelate":
            damaged_total += scan_decorrelate(caps, nlp, args)
            continue
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


def scan_decorrelate(caps: list[str], nlp, args) -> int:
    """Every variant of every caption checked against the original; prints the counts, returns the damage."""
    from trainer.captions.decorrelate import Decorrelator, summary_lines

    f = AdverbFilter("safe", model=nlp)
    f.check_hazards = not args.no_net
    d = Decorrelator(f, variants=args.variants, seed=0, check_hazards=not args.no_net)
    t0 = time.perf_counter()
    variants, results, report = d.run(caps, workers=1, cache_dir=False)
    secs = time.perf_counter() - t0
    bad, examples = Counter(), {}
    for r, vs in zip(results, variants):
        for v in vs:
            for h in hazards(r.original, v, [(s.start, s.end) for s in r.removed]):
                bad[h] += 1
                examples.setdefault(h, f"{r.original!r} -> {v!r}")
    n = len(caps) * args.variants
    print(f"decorrelate: {len(caps)} captions x {args.variants} variants in {secs:.1f} s, "
          f"changed {sum(v != r.original for r, vs in zip(results, variants) for v in vs) / n:.2%} of the variants, "
          f"damage in output: {sum(bad.values())}, caught by the safety net: {report['fallbacks']}")
    print("\n".join(summary_lines(report, examples=5)))
    for h, k in bad.most_common():
        print(f"  {h}: {k}  e.g. {examples[h]}")
    return sum(bad.values())


if __name__ == "__main__":
    sys.exit(main())
