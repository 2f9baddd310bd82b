"""Would the removals of one caption, taken together, leave a coordinator or a preposition dangling?

The grammar guard (guard.py) judges one word at a time, by its neighbours. This judges the caption as it will read
after every decision: the tokens the repair will drop with the removed words (`repair.dropped`: a conjunction between
two removed words, a coordinator that goes with the conjunct it joined) are dropped here too, so a run of removals
and a modifier taken with its head are checked against what is really left around them.
"""
from __future__ import annotations

from .guard import attributive_participle
from .repair import dropped
from .table import WORD_CATEGORY
from .words import SUBORDINATORS

# What a coordinator or a preposition cannot stand next to once a removal has closed the gap.
_AFTER_NOTHING = frozenset({"PUNCT", "CCONJ", "SCONJ"})
_BEFORE_COORDINATOR = frozenset({"PUNCT", "CCONJ", "SCONJ", "ADP", "DET", "AUX", "PART"})
_AFTER_PREPOSITION = frozenset({"PUNCT", "ADP", "CCONJ", "SCONJ", "VERB", "AUX"})
_VERB_FORMS = frozenset({"VBG", "VBN", "VB", "VBD", "VBZ", "VBP"})


# Coordinators, whatever the tagger calls them ("yet" is often ADV).
_COORDINATORS = frozenset({"and", "or", "but", "yet", "nor"})
# Coordinators of contrast: both conjuncts are what the contrast is between.
_CONTRAST = frozenset({"but", "yet"})
_MODIFIER_POS = frozenset({"ADV", "ADP", "ADJ"})
_PARALLEL_VERB_TAGS = frozenset({"VBG", "VBN", "VBD", "VBZ"})


def _first_conjunct_gone(doc, words: list[str], k: int) -> bool:
    """A removed run ends right before the coordinator `doc[k]`, so the run held the coordination's first
    conjunct, and the coordinator now joins what is left of the sentence to a modifier: a contrast ("far
    apart but face to face": "but" contrasts the removed words), or a modifier after "and"/"or" -- an adverb,
    a preposition, an adjective or a word the table lists ("far apart or close together") -- rather than a
    second verb ("sitting [quietly] and reading": the coordination of two verbs stays whole)."""
    nxt = doc[k + 1] if k + 1 < len(doc) else None
    if nxt is None or nxt.is_punct:
        return False  # "... and." is the other rule's
    if words[k] in _CONTRAST:
        return True
    return nxt.pos_ in _MODIFIER_POS or (nxt.lower_ in WORD_CATEGORY and nxt.tag_ not in _PARALLEL_VERB_TAGS)


def dangling(doc, words: list[str], out: list, forced=None) -> list[int]:
    """Removed tokens to put back because, with their neighbours removed too, they leave a coordinator or a
    preposition dangling: "on the side and back" -> "on the side and" (one conjunct of a coordination gone,
    the other kept), "is up and running" -> "is and running", "on skateboard outside in" -> "on in", and two
    verbs run together ("running together and happily playing" -> "running playing"). The
    per-token rules above look at a word's own neighbours; this looks at what the caption reads after every
    decision (a conjunction between two removed words goes with them, as `repair.rebuild` does), so a run of
    removals and a modifier taken with its head are checked too. Returns the removed tokens of the first
    offending run, less those the user's remove list forces (`forced[k]`), or []."""
    n = len(doc)
    drop = dropped(doc, out)
    i = 0
    while i < n:
        if not drop[i]:
            i += 1
            continue
        j = i
        while j < n and drop[j]:
            j += 1
        run = [k for k in range(i, j) if out[k] is not None and not (forced and forced[k])]
        if not run:
            i = j
            continue
        left = doc[i - 1] if i > 0 else None
        right = doc[j] if j < n else None
        right_empty = right is None or right.pos_ in _AFTER_NOTHING
        if left is not None and left.pos_ == "CCONJ" and right_empty:
            return run  # "the side and [back]."
        if right is not None and right.pos_ == "CCONJ" and (left is None or left.pos_ in _BEFORE_COORDINATOR):
            return run  # "is [up] and running", "on [top] and under"
        if right is not None and left is not None and (right.pos_ == "CCONJ" or right.lower_ in _COORDINATORS) \
                and _first_conjunct_gone(doc, words, j):
            return run  # "standing [far apart] but face to face", "standing [far apart] or close together"
        if left is not None and left.tag_ == "IN" and left.pos_ == "ADP" and words[i - 1] not in SUBORDINATORS \
                and (right is None or right.pos_ in _AFTER_PREPOSITION) and not doc[i - 1].is_punct \
                and not attributive_participle(doc, j):
            return run  # "on [skateboard outside] in the city": the preposition loses its object
        if left is not None and right is not None and left.pos_ == "VERB" and right.pos_ == "VERB" \
                and right.tag_ in _VERB_FORMS:
            return run  # "running [together and happily] playing": two verbs run together
        i = j
    return []
