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
    p.add_argument("--mode", choices=("safe", "all", "intensifiers"), default="safe",
                   help="safe (default): remove degree, manner, time and stance adverbs, keep what describes "
                        "the picture (spatial, appearance); all: every tagged adverb except negations and "
                        "wh-words, never breaking grammar; intensifiers: degree, stance and manner only")
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
    from ..captions.adverbs import AdverbFilter, SpacyModelMissing

    src = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")
    with src:
        lines = src.read().splitlines()
    try:
        f = AdverbFilter(args.mode, args.keep, args.remove, remove_categories=args.remove_category,
                         keep_categories=args.keep_category)
        todo = [line for line in lines if line.strip()]
        results = iter(f.filter_texts(todo, workers=args.workers, cache_dir=False if args.no_cache else args.cache_dir))
    except (SpacyModelMissing, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = sys.stdout
    for line in lines:
        if not line.strip():  # empty lines stay empty, so output line N answers input line N
            out.write((json.dumps({"text": line, "original": line, "removed": []}) if args.json else line) + "\n")
            continue
        r = next(results)
        out.write((json.dumps(r.to_json(), ensure_ascii=False) if args.json else r.text) + "\n")
    out.flush()
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
                       check_images=not args.no_image_check, progress=True)
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
                                          "filtered caption per line, in order; empty lines stay empty.")
    p.add_argument("file", nargs="?", default=None, metavar="FILE|-")
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
