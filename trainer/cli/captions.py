"""Sub-commands `adverbs` (filter caption lines) and `prepare` (write a processed caption set)."""
from __future__ import annotations

import argparse
import json
import sys


def _words(value: str) -> list[str]:
    return [w.strip() for w in value.split(",") if w.strip()]


def _categories(value: str) -> list[str]:
    from ..captions.adverb_lexicon import CATEGORIES

    cats = _words(value)
    bad = [c for c in cats if c not in CATEGORIES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown category {', '.join(bad)} (choose from {', '.join(CATEGORIES)})")
    return cats


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("safe", "all", "intensifiers", "decorrelate"), default="safe",
                   help="safe (default): remove degree, manner, time and stance adverbs, keep what describes "
                        "the picture (spatial, appearance); all: every tagged adverb except negations and "
                        "wh-words, never breaking grammar; intensifiers: degree, stance and manner only; "
                        "decorrelate: keep safe mode's adverbs but make them independent of the image "
                        "(redrawn from the data's own, put in at the data's rate; K variants per caption)")
    p.add_argument("--variants", type=int, default=4, metavar="K",
                   help="decorrelate: caption variants per image (training uses one per epoch)")
    p.add_argument("--rate", type=float, default=None,
                   help="decorrelate: share of captions given adverbs (default: the data's own share)")
    p.add_argument("--pool", type=_words, default=[], metavar="W,..",
                   help="decorrelate: adverbs to draw from (default: those in the data, by frequency)")
    p.add_argument("--remove-category", type=_categories, default=[], metavar="C,..",
                   help="also remove these categories (degree, manner, time, stance, spatial, appearance, focus, other)")
    p.add_argument("--keep-category", type=_categories, default=[], metavar="C,..",
                   help="never remove these categories")
    p.add_argument("--keep", type=_words, default=[], metavar="W,..", help="words/phrases never removed (@spatial, @degree ... for groups)")
    p.add_argument("--remove", type=_words, default=[], metavar="W,..", help="words/phrases always removed")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: automatic)")
    p.add_argument("--cache-dir", default=None, help="result cache (default: $XDG_CACHE_HOME/sd_adverb_lora/adverbs)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the result cache")


def cmd_adverbs(args) -> int:
    if args.mode == "decorrelate":
        return cmd_decorrelate(args)
    from ..captions.adverbs import AdverbFilter, SpacyModelMissing

    try:
        f = AdverbFilter(args.mode, args.keep, args.remove, remove_categories=args.remove_category,
                         keep_categories=args.keep_category)
    except (SpacyModelMissing, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .adverbs_stream import chunk_workers, stream_lines

    cache_dir = False if args.no_cache else args.cache_dir
    return stream_lines(lambda texts: f.filter_texts(texts, workers=chunk_workers(args.workers, len(texts)),
                                                     cache_dir=cache_dir),
                        args.file, args.json, SpacyModelMissing)


def cmd_decorrelate(args) -> int:
    """`adverbs --mode decorrelate`: reads every line first (the pool and the rate come from all of them); prints
    the first variant per line (--json: all K), and the report's counts on standard error."""
    from ..captions.adverbs import SpacyModelMissing
    from ..captions.captionset import CaptionRecord, CaptionSet
    from ..captions.decorrelate import process_captions

    src = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")
    with src:
        lines = src.read().splitlines()
    todo = CaptionSet(tuple(CaptionRecord("", line) for line in lines if line.strip()))
    try:
        processed = process_captions(todo, "decorrelate", variants=args.variants, rate=args.rate, seed=args.seed,
                                     pool=args.pool, keep=args.keep, remove=args.remove,
                                     remove_categories=args.remove_category, keep_categories=args.keep_category,
                                     workers=args.workers, cache_dir=False if args.no_cache else args.cache_dir)
    except (SpacyModelMissing, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out, done = sys.stdout, iter(processed.records)
    for line in lines:
        r = next(done) if line.strip() else None
        if args.json:
            item = {"text": line, "original": line, "removed": [], "variants": [line]} if r is None else {
                "text": r.caption, "original": r.original, "variants": list(r.variants),
                "removed": [{"text": s.text, "start": s.start, "end": s.end, "category": s.category}
                            for s in r.removed]}
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
        else:
            out.write((line if r is None else r.caption) + "\n")
    out.flush()
    from ..captions.decorrelate import summary_lines

    print("\n".join(summary_lines(processed.provenance["adverb_filter"]["decorrelate"])), file=sys.stderr)
    return 0


def cmd_prepare(args) -> int:
    from ..captions.adverbs import SpacyModelMissing
    from ..captions.load_report import DataError
    from ..captions.prepare import prepare

    try:
        path = prepare(args.raw_root, args.processed_root, args.split, args.mode, keep=args.keep, remove=args.remove,
                       captions=args.captions, max_samples=args.max_samples, seed=args.seed, strict=args.strict,
                       workers=args.workers, cache_dir=False if args.no_cache else args.cache_dir,
                       remove_categories=args.remove_category, keep_categories=args.keep_category,
                       check_images=not args.no_image_check, progress=True, variants=args.variants,
                       rate=args.rate, pool=args.pool)
    except (SpacyModelMissing, DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = json.loads((path.parent / "report.json").read_text(encoding="utf-8"))
    print(f"wrote {path}: {report['captions']} captions, {report['changed']} changed ({report['changed_percent']} %); "
          f"report: {path.parent / 'report.md'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("adverbs", help="remove adverbs from captions, one per line",
                              description="Reads captions one per line (FILE, or standard input) and writes one "
                                          "filtered caption per line, in order, as it goes; empty lines stay "
                                          "empty. Lines end at \\n only (a CRLF file stays CRLF); a line "
                                          "that is not UTF-8 or is over 10,000 bytes is copied unchanged, "
                                          "with a warning naming it.")
    p.add_argument("file", nargs="?", default=None, metavar="FILE|-")
    p.add_argument("--seed", type=int, default=0, help="decorrelate: seed of the draws (same seed, same output)")
    p.add_argument("--json", action="store_true",
                   help='one {"text", "original", "removed": [{"text", "start", "end", "category"}]} per line')
    _add_filter_args(p)
    p.set_defaults(func=cmd_adverbs)

    p = subparsers.add_parser("prepare", help="load a dataset, remove adverbs, write the processed set with a report")
    p.add_argument("--raw_root", "--raw-root", required=True, help="COCO root (annotations/, images/), image folder, or dataset")
    p.add_argument("--processed_root", "--processed-root", required=True, help="output root; writes <split>_<mode>/")
    p.add_argument("--split", default="train", help="train | val | train2014 | val2017 ... (COCO)")
    p.add_argument("--captions", choices=("all", "random", "first"), default="all", help="COCO: which captions per image")
    p.add_argument("--max_samples", "--max-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="fail on the first bad item instead of skipping it")
    p.add_argument("--no-image-check", action="store_true", help="do not check that images exist and open")
    _add_filter_args(p)
    p.set_defaults(func=cmd_prepare)
