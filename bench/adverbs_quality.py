"""Adverb filter quality: removal precision/recall against UD gold tags, and no-damage checks on COCO.

    .venv/bin/python bench/adverbs_quality.py [--ud FILE] [--coco FILE] [--coco-max N]

UD: each sentence's gold words are joined by spaces and filtered; removed offsets are mapped back to
gold words. Precision: removed words whose gold UPOS is ADV. Recall: gold ADV words removed, out of
gold ADV minus wh-adverbs (XPOS WRB) and negations (which every mode keeps by design).
``recall-`` (safe, intensifiers) also leaves out of the gold the adverbs whose category the mode keeps by
design (spatial, appearance, focus: `AdverbFilter.categorize` on the parsed sentence), so it measures
how much of what the mode means to remove it finds.
The ``naive`` row is ``pos_ == "ADV"`` minus negations, which is the ``all`` mode.
Results are printed for the whole file and for its two halves (odd/even sentences) so that a rule
tuned to one half shows up as a gap between them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from trainer.captions.adverb_lexicon import CATEGORIES, NEGATIONS  # noqa: E402
from trainer.captions.adverbs import MODES, AdverbFilter, load_spacy_model  # noqa: E402
from trainer.captions.hazards import hazards  # noqa: E402

# (precision, recall, recall without the kept categories); None: no target
TARGETS = {"safe": (0.97, None, 0.85), "all": (None, 0.90, None)}
KEPT_BY_DESIGN = frozenset({"spatial", "appearance", "focus"})


def read_conllu(path: Path) -> list[list[tuple[str, str, str]]]:
    """Sentences as lists of (form, UPOS, XPOS) for syntactic words (multiword-token lines skipped)."""
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                sents.append(cur)
                cur = []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if "-" in cols[0] or "." in cols[0]:
            continue
        cur.append((cols[1], cols[3], cols[4]))
    if cur:
        sents.append(cur)
    return sents


def gold_categories(f, sents, texts) -> list[list[str | None]]:
    """Per gold word, the filter's category for it (None where no spaCy token starts at the word)."""
    out = []
    for sent, doc in zip(sents, f.nlp.pipe(texts)):
        by_start = {t.idx: t.i for t in doc}
        cats, pos = [], 0
        for form, _, _ in sent:
            i = by_start.get(pos)
            cats.append(f.categorize(doc, i) if i is not None else None)
            pos += len(form) + 1
        out.append(cats)
    return out


def score(sents, results, cats=None, kept=frozenset()) -> dict:
    tp = fp = gold_n = gold_hit = 0
    ex_n = ex_hit = 0
    fps: Counter = Counter()
    missed: Counter = Counter()
    for n_sent, (sent, res) in enumerate(zip(sents, results)):
        cats_s = cats[n_sent] if cats else None
        starts, pos = [], 0
        for form, _, _ in sent:
            starts.append((pos, pos + len(form)))
            pos += len(form) + 1
        removed_words = set()
        for span in res.removed:
            for k, (a, b) in enumerate(starts):
                if a < span.end and span.start < b:
                    removed_words.add(k)
        for k, (form, upos, xpos) in enumerate(sent):
            is_adv = upos == "ADV"
            counted = is_adv and xpos != "WRB" and form.lower() not in NEGATIONS
            gold_n += counted
            designed = counted and not (cats_s and cats_s[k] in kept)
            ex_n += designed
            ex_hit += designed and k in removed_words
            if k in removed_words:
                if is_adv:
                    tp += 1
                else:
                    fp += 1
                    fps[(form.lower(), upos)] += 1
                gold_hit += counted
            elif counted:
                missed[form.lower()] += 1
    return {"precision": tp / max(tp + fp, 1), "recall": gold_hit / max(gold_n, 1), "removed": tp + fp,
            "recall_designed": ex_hit / max(ex_n, 1),
            "false_pos": fps.most_common(12), "missed": missed.most_common(40)}


def coco_checks(originals: list[str], results) -> dict:
    """Damage each removal must not do (`trainer.captions.hazards`), counted per kind, with an example."""
    bad: Counter = Counter()
    examples: dict[str, str] = {}
    for orig, res in zip(originals, results):
        for name in hazards(orig, res.text, [(s.start, s.end) for s in res.removed]):
            bad[name] += 1
            examples.setdefault(name, f"{orig!r} -> {res.text!r}")
    return {"violations": dict(bad), "examples": examples}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ud", type=Path, default=SHARED / "ud" / "en_ewt-ud-dev.conllu")
    ap.add_argument("--coco", type=Path, default=SHARED / "coco" / "captions_val2017.json")
    ap.add_argument("--coco-max", type=int, default=None, help="only the first N COCO captions")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--show-fp", action="store_true", help="print the most frequent false positives")
    args = ap.parse_args()

    nlp = load_spacy_model()
    filters = {m: AdverbFilter(m, model=nlp) for m in MODES}
    ok = True
    if args.ud.is_file():
        sents = read_conllu(args.ud)
        texts = [" ".join(w for w, _, _ in s) for s in sents]
        print(f"UD {args.ud.name}: {len(sents)} sentences")
        print(f"{'mode':<13}{'half':<6}{'precision':>10}{'recall':>8}{'recall-':>9}{'removed':>9}")
        cats = gold_categories(filters["safe"], sents, texts)
        for mode, f in filters.items():
            res = f.filter_texts(texts, workers=args.workers, cache_dir=False)
            kept = frozenset() if mode == "all" else KEPT_BY_DESIGN | (frozenset(CATEGORIES) - f.removed_categories - {"other"})
            for half, idx in (("all", range(len(sents))), ("odd", range(0, len(sents), 2)), ("even", range(1, len(sents), 2))):
                s = score([sents[i] for i in idx], [res[i] for i in idx], [cats[i] for i in idx], kept)
                print(f"{mode:<13}{half:<6}{s['precision']:>10.4f}{s['recall']:>8.4f}{s['recall_designed']:>9.4f}{s['removed']:>9}")
                if half == "all":
                    p_t, r_t, rd_t = TARGETS.get(mode, (None, None, None))
                    if (p_t and s["precision"] < p_t) or (r_t and s["recall"] < r_t) or (rd_t and s["recall_designed"] < rd_t):
                        ok = False
                        print(f"  below target (precision >= {p_t}, recall >= {r_t}, recall- >= {rd_t})")
                    if args.show_fp:
                        print("  false positives:", s["false_pos"])
                        print("  missed:", s["missed"])
    else:
        print(f"skipped UD: {args.ud} not found")

    if args.coco.is_file():
        doc = json.loads(args.coco.read_text(encoding="utf-8"))
        caps = [a["caption"] for a in doc["annotations"]][: args.coco_max]
        print(f"\nCOCO {args.coco.name}: {len(caps)} captions")
        for mode, f in filters.items():
            t0 = time.perf_counter()
            res = f.filter_texts(caps, workers=args.workers, cache_dir=False)
            changed = sum(r.changed for r in res) / len(res)
            words = Counter(s.text.lower() for r in res for s in r.removed)
            print(f"{mode:<13} changed {changed:6.1%}  ({time.perf_counter() - t0:.1f} s)  top removed: "
                  + ", ".join(f"{w} {c}" for w, c in words.most_common(10)))
            checks = coco_checks(caps, res)
            print(f"  {mode} damage:", checks["violations"] or "none")
            for name, ex in checks["examples"].items():
                print(f"    {name}: {ex}")
            ok = ok and not checks["violations"]
    else:
        print(f"skipped COCO: {args.coco} not found")
    print("\nall targets met" if ok else "\nTARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
