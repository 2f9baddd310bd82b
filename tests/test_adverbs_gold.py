"""The hand-labelled gold sets of the adverb filter: the held-out set is frozen, and its labels are whole."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
CATEGORIES = {"degree", "manner", "time", "stance", "spatial", "appearance", "focus", "grammar", "not-adverb",
              "ambiguous", "negation", "wh"}
# The guideline's categories no mode may remove: `bound` (all mode keeps them too). Negation and wh-words are
# never removed by design; set 16 is the first set to label one ("never").
BOUND = {"grammar", "not-adverb", "negation", "wh"}


# Each held-out set and its frozen sha256, in the order they were labelled: a set must share no caption with
# the sets before it (the first set, tuned on, and the held-out sets above it).
HELD_OUT = {
    "adverbs_gold2.jsonl": "65ef774532c2311765dd08103a59104f501e7c354217c1d98729d307c61e58b7",
    "adverbs_gold3.jsonl": "3db56e3adcd1f854c71cca29673a7f6d57459024c1cc8536888f98369a7463f9",
    "adverbs_gold4.jsonl": "5eaf7c3a00295d4d80f4f529fede004b61158b459acd59e4b53671887930aefc",
    "adverbs_gold5.jsonl": "f78842a06c0a6b24a3194599a0b33a5f1f660ae8e775d5b7bc470fff0ffe5a12",
    "adverbs_gold6.jsonl": "17e759460f8d41543327a29c28de09466b7682e49a8e20f0040f053b3b9d69b4",
    "adverbs_gold7.jsonl": "c26e5bd4ea0ab887f40e388a3c0b4c86ee315e551060e48b0d921479d6cec197",
    "adverbs_gold8.jsonl": "2d2bb406f5774e76aebcb97e0bca2b52a1fcbfd86c840f726dc7f085fe68e132",
    "adverbs_gold9.jsonl": "f8dab0f8e36d5e03a5104ab96f6235502625eed36bc7b96b1f4ed7cf80718dab",
    "adverbs_gold10.jsonl": "0c76386a9953fb19e4ff4cc15b21a3c02120118d9e8dee0a42dc9cd192064b52",
    "adverbs_gold11.jsonl": "552b344dfbb7827886ee07fa9befb19eaa814649f0235fcb7384bbe7fb1e1a5a",
    "adverbs_gold12.jsonl": "d0651572f1f675f7801317bf3365557421ff5db4ce57ae20a29715634704aa81",
    "adverbs_gold13.jsonl": "0f1b7a6acc55bf37a601e88bd2e529b00df38fdae42c0f8e2cc2e92e04df1654",
    "adverbs_gold14.jsonl": "74934e2ba2be9072a7e9f9cf74f7c3bf1c7b51a43e47f53a3240a5f2bfa8a421",
    "adverbs_gold15.jsonl": "eafe8fa647c6a5dc280af653f66b31b735f2f28fbc18de72c14d67a1fec61c6c",
    "adverbs_gold16.jsonl": "123e5f47e470b148b6ce417970a34d2c6b8b7a13fbab21b4cfe55a4235b03be1",
    "adverbs_gold17.jsonl": "c36a7cbc15cba5344c01c13f45d71b2a8e07ba91ed360688a094804aa5efe0fd",
}
LABELLING_ORDER = ("adverbs_gold.jsonl", *HELD_OUT)
# The held-out sets whose safe agreement is held at >= 98 %: a set is added only after its first run met it.
AGREEMENT_HELD = ("adverbs_gold2.jsonl", "adverbs_gold3.jsonl", "adverbs_gold4.jsonl", "adverbs_gold5.jsonl",
                  "adverbs_gold7.jsonl", "adverbs_gold8.jsonl", "adverbs_gold9.jsonl",
                  "adverbs_gold10.jsonl", "adverbs_gold11.jsonl", "adverbs_gold12.jsonl",
                  "adverbs_gold13.jsonl", "adverbs_gold14.jsonl", "adverbs_gold15.jsonl",
                  "adverbs_gold16.jsonl", "adverbs_gold17.jsonl")


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_held_out_gold_set_is_frozen(name):
    """Each held-out set was labelled and frozen before the filter ran on it (tests/data/README.md)."""
    assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == HELD_OUT[name], (
        f"tests/data/{name} changed: it is a frozen held-out set; relabelling it is a new set")


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_held_out_labels_point_at_their_words_and_share_no_caption(name):
    rows = _rows(name)
    assert len(rows) == 300 and len({r["id"] for r in rows}) == 300
    earlier = {r["id"] for other in LABELLING_ORDER[:LABELLING_ORDER.index(name)] for r in _rows(other)}
    assert not earlier & {r["id"] for r in rows}, "the gold sets must not share captions"
    for r in rows:
        for a in r["adverbs"]:
            assert r["caption"][a["start"]:a["end"]] == a["word"], (r["id"], a)
            assert a["category"] in CATEGORIES, (r["id"], a)
            assert a["bound"] == (a["category"] in BOUND)


def _bench():
    import importlib.util

    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("adverbs_quality", root / "bench" / "adverbs_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_errata_point_at_frozen_captions_and_leave_the_files_alone():
    """tests/data/adverbs_gold_errata.jsonl corrects labels of frozen sets at report time: each erratum names a
    frozen set, a caption in it and its word, with a category and a reason; applying it copies the rows."""
    bench = _bench()
    errata = bench.read_errata(DATA / "adverbs_gold_errata.jsonl")
    assert errata
    for e in errata:
        assert e["set"] in HELD_OUT and e["why"], e
        lab = e["label"]
        assert lab["category"] in CATEGORIES and lab["bound"] == (lab["category"] in ("grammar", "not-adverb")), e
        rows = _rows(e["set"])
        before = json.dumps(rows)
        fixed, n = bench.apply_errata(e["set"], rows, errata)
        assert n >= 1 and json.dumps(rows) == before, "apply_errata must not change the frozen rows"
        row = next(r for r in fixed if r["id"] == e["id"])
        assert lab in row["adverbs"] and row["caption"][lab["start"]:lab["end"]] == lab["word"]


def test_quality_bench_counts_broken_and_kept_words():
    """bench/adverbs_quality.py's gold table: a removed bound word is broken and a kept word removed;
    agreement accepts an also_acceptable variant; precision/recall count labelled removals."""
    from types import SimpleNamespace as NS

    bench = _bench()
    cap = "A kite too far to reach, very high."
    rows = [{"caption": cap, "gold": "A kite too far to reach, high.", "adverbs": [
        {"word": "too", "start": 7, "end": 10, "category": "grammar", "removed": False, "bound": True},
        {"word": "far", "start": 11, "end": 14, "category": "spatial", "removed": False, "bound": False},
        {"word": "very", "start": 25, "end": 29, "category": "degree", "removed": True, "bound": False},
        {"word": "high", "start": 30, "end": 34, "category": "spatial", "removed": False, "bound": False}]}]

    def result(text, *spans):
        return NS(text=text, removed=[NS(start=s, end=e) for s, e in spans])

    good = bench.score_gold(rows, [result("A kite too far to reach, high.", (25, 29))], "safe")
    assert (good["agreement"], good["precision"], good["recall"], good["keep_removed"], good["broken"]) == (1, 1, 1, 0, 0)
    bad = bench.score_gold(rows, [result("A kite far to reach, high.", (7, 10), (25, 29))], "safe")
    assert bad["agreement"] == 0 and bad["broken"] == 1 and bad["keep_removed"] == 1 and bad["precision"] == 0.5
    unlabelled = bench.score_gold([{"caption": "A very big dog.", "gold": "A big dog."}],
                                  [result("A big dog.", (2, 6))], "safe")
    assert unlabelled["precision"] == unlabelled["recall"] == 1.0 and unlabelled["broken"] == 0


@pytest.mark.parametrize("name", AGREEMENT_HELD)
def test_safe_mode_agrees_with_each_held_out_set(name, nlp):
    """>= 98 % of safe-mode outputs equal the held-out gold or an accepted variant. Each set was frozen before
    the filter first ran on it (first runs: set 2 99.33 %, set 3 99.33 %, set 4 99.33 %,
    set 5 99.00 %, set 7 99.33 %, set 8 99.33 %, set 9 99.67 %, set 10 99.00 %; set 6's 97.67 % keeps it out);
    98 % is set 2's threshold, added for each later set only after its first run."""
    from trainer.captions.adverbs import AdverbFilter

    rows = _rows(name)
    results = AdverbFilter("safe", model=nlp).filter_texts([r["caption"] for r in rows], workers=1, cache_dir=False)
    wrong = [(r["caption"], res.text) for r, res in zip(rows, results)
             if res.text != r["gold"] and res.text not in r.get("also_acceptable", ())]
    assert 1 - len(wrong) / len(rows) >= 0.98, wrong
