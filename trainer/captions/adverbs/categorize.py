"""What kind of adverb is this? The table's category for the word, or its role reading (table.ROLE_READINGS)."""
from __future__ import annotations

from .readings import lengthened_degree, parsed
from .table import (
    COUNT_FOCUS, DAMAGE_WORDS, DRESS_REGISTER, DRESS_WORDS, QUANTITY_WORDS, RIGHT_PHRASE_HEADS, RIGHT_TIME_HEADS, ROLE_READINGS,
    SMILE_WORDS, VISIBILITY_WORDS, WORD_CATEGORY,
)
from .words import INFINITIVE_CONSTRUCTIONS, NEGATIONS, WH_ADVERBS

# Heads whose adverb describes appearance: past participles and adjectives ("dimly lit", "brightly colored").
APPEARANCE_HEAD_TAGS = frozenset({"VBN", "JJ", "JJR"})
# What may follow "so far" when "far" is the distance ("so far away", "so far from home").
SPATIAL_CONTINUATION = frozenset({"from", "away", "off", "apart", "ahead", "behind", "back", "out", "down", "up",
                                  "into", "beyond", "above", "below", "over", "under", "that", "as", "enough"})
# What "just" may stand before to mean "a short way" ("just off the shore", "just above the door").
_PLACE_AFTER_JUST = frozenset({"off", "above", "below", "behind", "beside", "outside", "inside", "under", "over",
                               "next", "across", "past", "in", "on", "at", "by", "near", "beyond", "around",
                               "underneath", "beneath", "ahead", "in front", "up", "down", "out", "to", "into",
                               "through", "along", "left", "right", "before", "after"})


def so_far(doc, i: int) -> bool:
    """`doc[i]` is the "so" of the time adverbial "so far" ("two people so far, and", "so far I've got
    nothing"), not degree "so" + spatial "far" ("so far away", "so far from home", "so far out")."""
    if doc[i].lower_ != "so" or doc[i].pos_ != "ADV" or i + 1 >= len(doc) or doc[i + 1].lower_ != "far":
        return False  # a "so" the tagger calls a conjunction stays, so "far" must stay with it
    after = doc[i + 2] if i + 2 < len(doc) else None
    return after is None or after.is_punct or (after.pos_ in ("PRON", "CCONJ", "SCONJ", "AUX", "VERB")
                                                and after.lower_ not in SPATIAL_CONTINUATION)


def _opens_clause(doc, i: int) -> bool:
    return i == 0 or (doc[i - 1].is_punct and doc[i - 1].text != "-")


def _modifies_appearance_head(doc, i: int) -> bool:
    """The word modifies a participle or an adjective ("dimly lit", "dressed sharply"). Without a parse,
    the next word stands in for the head."""
    t = doc[i]
    head = t.head if parsed(doc) else t
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    modifies = head if head.i > i or head.tag_ == "VBN" else nxt if head.i == i else None
    return modifies is not None and modifies.tag_ in APPEARANCE_HEAD_TAGS


def _before_infinitive_construction(doc, k: int) -> bool:
    """`doc[k]` opens "about to" / "yet to" + a verb ("about to jump", "yet to arrive")."""
    return k + 2 < len(doc) and doc[k].lower_ in INFINITIVE_CONSTRUCTIONS and doc[k + 1].lower_ == "to" \
        and doc[k + 2].tag_ == "VB"


# What "too" grades as a degree word: an adjective, an adverb, a participle, a quantity ("too big", "too much").
_DEGREE_HEAD_TAGS = frozenset({"JJ", "JJR", "RB", "RBR", "VBN"})
_QUANTIFIERS = frozenset({"much", "many", "few", "little"})


def _too(doc, i: int) -> str:
    """ "too" before what it grades is degree ("too big", "too far", "too crowded", "too much"); anywhere else
    (at a clause end, before a comma, a conjunction or a preposition) it means "also": focus ("a dog is in the
    yard too"). The typo reading ("Too zebras") is `readings.not_an_adverb`'s."""
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    if nxt is not None and not nxt.is_punct and (nxt.pos_ in ("ADJ", "ADV") or nxt.tag_ in _DEGREE_HEAD_TAGS
                                                 or nxt.lower_ in _QUANTIFIERS):
        return "degree"
    return "focus"


# "just" before a verb of wanting or needing means "only" ("just wants to eat", "just needs a nap"): focus.
_WANTING = frozenset({"want", "wants", "wanted", "wanting", "need", "needs", "needed", "needing", "wish", "wishes",
                      "wished", "wishing"})
# "just" before a noun phrase means "only" ("with just a sandwich", "just the top of a meter"): focus.
_NOUN_PHRASE_AFTER_JUST = frozenset({"DET", "NOUN", "PROPN"})
# Degree words that may stand between "clearly" and what it modifies ("very clearly seen", "seen quite clearly").
_GRADERS = frozenset({"very", "quite", "so", "really", "most", "more", "fairly", "pretty", "not"})


def _just(doc, i: int) -> str:
    """ "just" (a count after it is the caller's: "just one" is focus): time before "about to" / "yet to" ("just
    about to wipe out": the moment; "about" is the construction, which the guard keeps); focus before a verb of
    wanting or needing ("just wants to eat" = only wants), before a noun phrase ("just the top of a meter" =
    only the top) or "short" ("just short of a dozen" = almost); spatial before a place ("just off the shore"); time
    otherwise ("just finished")."""
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    if _before_infinitive_construction(doc, i + 1):
        return "time"
    if nxt is not None and (nxt.lower_ in _WANTING or nxt.pos_ in _NOUN_PHRASE_AFTER_JUST):
        return "focus"  # "just wants to eat", "with just the top of a meter visible": = only
    if nxt is not None and nxt.lower_ in ("short", "shy"):
        return "focus"  # "just short of a dozen": = almost, as "nearly"
    if nxt is not None and (nxt.lower_ in _PLACE_AFTER_JUST or WORD_CATEGORY.get(nxt.lower_) == "spatial"):
        return "spatial"
    return "time"


def right_phrase(doc, i: int) -> bool:
    """`doc[i]` is "right" and makes one expression with the word after it: "right now", "right here", "right
    away", "right next to", "right behind" (table.ROLE_READINGS["right"])."""
    return doc[i].lower_ == "right" and i + 1 < len(doc) and doc[i + 1].lower_ in RIGHT_PHRASE_HEADS


def _right_time(doc, i: int) -> bool:
    """`doc[i]` ("right") opens "right now", "right then" or "right away" (= immediately; "right away from the
    camera" is a direction)."""
    if not right_phrase(doc, i) or doc[i + 1].lower_ not in RIGHT_TIME_HEADS:
        return False
    return doc[i + 1].lower_ != "away" or i + 2 >= len(doc) or doc[i + 2].lower_ != "from"


def _next_to(doc, i: int, words) -> bool:
    """`doc[i]` stands next to a word of `words`, past degree words on either side ("seen very clearly", "very
    casually dressed")."""
    j = i + 1
    while j < len(doc) and doc[j].lower_ in _GRADERS:
        j += 1
    if j < len(doc) and doc[j].lower_ in words:
        return True
    j = i - 1
    while j >= 0 and doc[j].lower_ in _GRADERS:
        j -= 1
    return j >= 0 and doc[j].lower_ in words


def _visibility(doc, i: int) -> bool:
    """`doc[i]` ("clearly") modifies a word of seeing or being visible next to it, past degree words: "seen
    clearly", "clearly visible", "very clearly marked", "can be seen very clearly"."""
    return _next_to(doc, i, VISIBILITY_WORDS)


def _dressing(doc, i: int) -> bool:
    """`doc[i]` ("casually", "formally", "informally") modifies a word of dressing next to it, past degree words:
    "dressed casually", "casually dressed", "very formally attired", "wearing informally"."""
    return _next_to(doc, i, DRESS_WORDS)


def categorize(doc, i: int) -> str:
    """The category of the adverb at `doc[i]` (see table.py), by word and by role."""
    t = doc[i]
    w = t.lower_
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    if lengthened_degree(w):
        return "degree"
    if w == "so" and so_far(doc, i) or w == "far" and i > 0 and so_far(doc, i - 1):
        return "time"  # "so far" = until now
    if w in COUNT_FOCUS and nxt is not None and (nxt.like_num or nxt.lower_ in QUANTITY_WORDS):
        return "focus"  # "about 20", "over 200", "only one", "just one": bounds a count
    if w == "just":
        return _just(doc, i)
    if w == "too":
        return _too(doc, i)
    if w == "right" and _right_time(doc, i) or w in RIGHT_TIME_HEADS and i > 0 and _right_time(doc, i - 1):
        return "time"  # "right now", "right away" (= immediately): one time expression
    if w == "clearly":
        return "appearance" if _visibility(doc, i) else "stance"  # "seen clearly" / "clearly a dog"
    if w in DRESS_REGISTER:
        return "appearance" if _dressing(doc, i) else "manner"  # "dressed casually" / "casually plays the Wii"
    if w == "brightly":
        near = {doc[k].lower_ for k in (i - 1, i + 1) if 0 <= k < len(doc)}
        return "manner" if near & SMILE_WORDS else "appearance"  # "smiles brightly" / "brightly colored"
    if w == "badly":
        return "degree" if nxt is not None and nxt.lower_ in DAMAGE_WORDS else "appearance"  # "badly bruised"
    if w == "long" and nxt is not None and nxt.tag_ in APPEARANCE_HEAD_TAGS:
        return "appearance"  # length, not duration: "long horned cows", "long haired dog"
    if w == "well":
        return "appearance" if _modifies_appearance_head(doc, i) else "stance" if _opens_clause(doc, i) else "manner"
    if w == "even" and nxt is not None and nxt.tag_ in ("JJR", "RBR"):
        return "degree"  # "even smaller": how much smaller
    if w in ("oddly", "strangely") and _opens_clause(doc, i):
        return "stance"  # "Oddly, ..." is the speaker's comment; "oddly shaped" is how it looks
    category = WORD_CATEGORY.get(w)
    if category is not None:
        return category
    if w.endswith("ly"):
        return "appearance" if _modifies_appearance_head(doc, i) else "manner"
    return "other"


def where(word: str, in_lexicon: bool = True) -> str:
    """Where the table puts `word`: its category, "role: <rule>" for a word of ROLE_READINGS, "-ly rule" for
    an unlisted -ly adverb, "never removed" for negations and wh-words, "other", or "not an adverb" (a word
    English has no adverb for: `in_lexicon` False, as `words.Lexicon.is_adverb` says)."""
    w = word.lower()
    if w in NEGATIONS or w in WH_ADVERBS:
        return "never removed"
    if w in ROLE_READINGS:
        return f"role: {ROLE_READINGS[w]}"
    if not in_lexicon:
        return "not an adverb"
    if w in WORD_CATEGORY:
        return WORD_CATEGORY[w]
    if w.endswith("ly"):
        return "-ly rule: appearance with a participle or adjective, manner otherwise"
    return "other"
