"""The category table: one category per word, the same decision for words of one kind, and every adverb
the tagger finds in COCO val2017 placed (tests/data/coco_val2017_adverbs.tsv, written by
`bench/adverbs_quality.py --vocabulary`)."""
from __future__ import annotations

from pathlib import Path

from trainer.captions.adverbs import table
from trainer.captions.adverbs.categorize import where
from trainer.captions.adverbs.table import ROLE_READINGS, WORD_CATEGORY

VOCABULARY = Path(__file__).parent / "data" / "coco_val2017_adverbs.tsv"


def _rows():
    lines = VOCABULARY.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["word", "count", "is_adverb", "where"]
    return [(w, int(n), a == "1", place) for w, n, a, place in (line.split("\t") for line in lines[1:])]


def test_every_word_has_one_category():
    listed = sum(len(words.split()) for words in table._TABLE.values())
    assert listed == len(WORD_CATEGORY), "a word is listed twice"
    assert set(WORD_CATEGORY.values()) <= set(table.CATEGORIES)
    assert table.SAFE_REMOVED == {"degree", "manner", "time", "stance"}


def test_the_vocabulary_file_matches_the_table():
    """Regenerate with `python bench/adverbs_quality.py --vocabulary tests/data/coco_val2017_adverbs.tsv`."""
    rows = _rows()
    assert len(rows) > 200 and sum(n for _, n, _, _ in rows) > 3000
    stale = [(w, place, where(w, a)) for w, _, a, place in rows if where(w, a) != place]
    assert stale == []


def test_every_coco_adverb_seen_twice_is_in_the_table():
    unplaced = [w for w, n, is_adverb, _ in _rows()
                if is_adverb and n >= 2 and w not in WORD_CATEGORY and w not in ROLE_READINGS
                and where(w) != "never removed"]
    assert unplaced == []


def test_words_of_one_kind_share_a_decision():
    """The issue's inconsistencies: each group is one category, so one decision in every mode."""
    groups = [("freshly", "newly"), ("pensively", "intently", "attentively"), ("gently", "carefully"),
              ("oddly", "messily", "neatly", "brightly"), ("jointly", "together"),
              ("also", "only", "mainly", "primarily", "all", "both"), ("completely", "partially"),
              ("else", "otherwise", "either", "also")]  # words that bound who or what is meant: focus (v14)
    for group in groups:
        assert len({where(w) if w not in ROLE_READINGS else "role" for w in group} - {"role"}) == 1, group
    assert WORD_CATEGORY["intently"] in table.SAFE_REMOVED
    assert WORD_CATEGORY["oddly"] not in table.SAFE_REMOVED and ROLE_READINGS["oddly"]
    assert WORD_CATEGORY["freshly"] == "appearance" and WORD_CATEGORY["also"] == "focus"


def test_clearly_right_and_just_have_role_readings():
    """v15: "clearly" is appearance with a word of seeing ("seen clearly", "clearly visible"), stance as a sentence
    adverb; "right" is one expression with the word after it; "just" before wanting/needing is focus (= only)."""
    for w in ("clearly", "right", "just"):
        assert where(w).startswith("role: "), w
    assert WORD_CATEGORY["clearly"] == "stance" and WORD_CATEGORY["right"] == "spatial"  # the default readings
    assert {"seen", "visible", "shown", "marked", "labeled", "legible"} <= table.VISIBILITY_WORDS


def test_set8_tables():
    """v16: "casually", "formally", "informally" are appearance with a word of dressing and manner otherwise; a
    noun compound's adverb-like first word and an idiom's particle are tables of their own."""
    from trainer.captions.adverbs.words import PHRASAL_IDIOMS

    for w in ("casually", "formally", "informally"):
        assert where(w).startswith("role: "), w
        assert WORD_CATEGORY[w] == "appearance"  # the default reading, as "clearly" keeps stance
    assert {"dressed", "attired", "wearing"} <= table.DRESS_WORDS
    assert "life" in table.NOUN_COMPOUNDS["still"] and all(w in WORD_CATEGORY for w in table.NOUN_COMPOUNDS)
    assert ("hanging", "around") in PHRASAL_IDIOMS and ("kicking", "back") in PHRASAL_IDIOMS
    assert ("walking", "around") not in PHRASAL_IDIOMS and ("running", "around") not in PHRASAL_IDIOMS
