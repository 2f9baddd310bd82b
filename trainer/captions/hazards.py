"""Damage a removal can do to a caption, found by comparing the filtered text with the original.

Each check counts a pattern in the original and in the output and reports it only when the output
has more of it, so captions that were already ungrammatical ("a apple") are not blamed on the
filter. The filter runs these checks on every changed caption and keeps the original when one
fires; bench/adverbs_quality.py and tests/test_adverbs.py scan real COCO captions with them.
"""
from __future__ import annotations

import re

from .adverbs.table import words_in
from .adverbs.words import (
    ADJECTIVE_DEGREE_WORDS, COLOUR_MATERIAL_ADJECTIVES, COORDINABLE_PREPOSITIONS, DO_FORMS, INFINITIVE_CONSTRUCTIONS,
    PREPOSITION_HEADS, STRANDABLE_PREPOSITIONS,
)
from .articles import article_for as _article_for

# What may follow next/close/near without it being stranded ("next to", "close by", "close up").
_HEAD_OK = r"(?:to|too|two|by|up|together|at|of|from|enough|in|on|and|or|behind|beside|the|a|an|door|each|tight)"
_STRANDED = re.compile(rf"\b(?:next|near)\b(?!\s+{_HEAD_OK}\b)", re.IGNORECASE)
_ARTICLE = re.compile(r"\b(a|an)\s+([A-Za-z0-9][\w'-]*)", re.IGNORECASE)
_PUNCT = (
    ("doubled punctuation", re.compile(r"[,;:]\s*[,;:.!?]|(?<!\.)\.\s*\.(?!\.)|[!?]\s*[,;:]")),
    ("punctuation at start", re.compile(r"^\s*[,;:.!?)]")),
    ("empty brackets", re.compile(r"[(\[]\s*[)\]]")),
    ("space before punctuation", re.compile(r"\s[,;:.!?)](?!\S)|\s[,;:!?)]")),
    ("doubled space", re.compile(r"\S {2,}\S")),
    ("orphaned conjunction", re.compile(r"\b(?:and|or|but)\s*[.!?]?\s*$|^\s*(?:and|or|but)\b|\b(?:and|or)\s*[,.;:]", re.IGNORECASE)),
)
# Grammar a deletion can break without leaving a trace in the punctuation (issue #23's classes).
_DEGREE_WORDS = frozenset({"very", "really", "so", "too", "quite", "extremely", "super", "pretty", "rather", "fairly",
                           "incredibly", "highly", "somewhat", "slightly"})
_ALL_DEGREE = words_in("degree")  # a degree word modifies the next word: "looking utterly disgusting" is no verb pair
_PARTICLE_WORDS = frozenset({"up", "down", "out", "off", "in", "on", "over", "away", "back"})
_DETERMINER_WORDS = frozenset({"a", "an", "the"})  # "a close up", "the thumbs up" (a possessed "its tail up" is no noun)
_NOT_PARTICIPLES = frozenset({"during", "including", "regarding", "concerning", "according", "following", "building", "ceiling", "clothing", "morning", "evening", "something", "anything",
                              "nothing", "everything", "thing", "things", "king", "ring", "wing", "string", "swing",
                              "spring", "wedding", "icing", "frosting", "topping", "painting", "drawing", "railing",
                              "bedding", "awning", "stuffing", "dressing", "seating", "housing", "parking", "lighting",
                              "sibling", "pudding", "filling", "setting", "landing", "opening", "crossing", "bed",
                              "shed", "red", "sled", "feed", "seed", "weed", "speed", "need", "reed", "breed"})

# A clause with its own subject and a modal after a "so" inside a sentence: "so (that) a boy can ride".
_PURPOSE_CLAUSE = re.compile(r"(?:i|you|he|she|we|they|it|the|a|an|his|her|their|its|my|our|your|this|that)\b"
                             r"(?:\s+[\w'-]+){0,3}?\s+(?:can|could|will|would|may|might|should|shall)\b")


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def grammar_breaks(original: str, removed) -> list[str]:
    """Grammar a removal at `removed` ((start, end) offsets into `original`) breaks: a to-infinitive left
    without its "enough"/"too", an "of" without its head ("apiece of luggage"), a noun without its particle
    ("a close up", "thumbs up"), two verbs run together ("looking upward holding"), a degree word left
    without the word it modified ("a very pretty dress" -> "a very dress"), a preposition left without its
    object ("closed since recently." -> "closed since."), "be about to" / "have yet to" without its adverb, one
    conjunct of coordinated prepositions ("over and under" -> "and under"), and the adjective "pretty"/"real"
    taken from before a colour or material ("some pretty pink roses")."""
    out = []
    spans = sorted(removed)
    gone = [False] * (len(original) + 1)
    for s, e in spans:
        for k in range(s, e):
            gone[k] = True

    def kept_before(s: int) -> str:  # the kept text before offset s, lower case, removed characters as spaces
        return "".join(c if not gone[k] else " " for k, c in enumerate(original[:s])).lower()

    def kept_after(e: int) -> str:
        return "".join(c for k, c in enumerate(original[e:], e) if not gone[k]).lstrip().lower()

    for s, e in spans:
        word = original[s:e].lower()
        kept_text, rest = kept_before(s), kept_after(e)
        before = _words(kept_text)  # the kept words before the removal, nearest last
        prev = before[-1] if before else ""
        if (word == "enough" and re.match(r"(?:to|for)\b", rest)) or (word == "too" and re.match(r"(?:[\w']+\s+){1,2}to\s+\w", rest)) \
                or (prev == "too" and re.match(r"to\s+\w", rest)) or re.match(r"enough\s+(?:to|for)\b", rest):
            out.append("lost complement (enough/too ... to)")
        if re.match(r"of\b", rest) and not re.match(r"of\b", original[s:].lower()):
            out.append("of without its head")
        if word in _PARTICLE_WORDS and (prev == "thumbs" or (len(before) > 1 and before[-2] in _DETERMINER_WORDS)) \
                and (not rest or re.match(r"(?:of\b|[,.;:!?])", rest)):
            out.append("noun without its particle")
        nxt = _words(rest[:40])[:1]
        if nxt and word not in _ALL_DEGREE and len(prev) > 4 and prev not in _NOT_PARTICIPLES and (prev.endswith("ing") or prev.endswith("ed")) \
                and nxt[0].endswith("ing") and len(nxt[0]) > 4 and nxt[0] not in _NOT_PARTICIPLES \
                and not re.search(r"[,;:.!?]", original[:s].rstrip()[-1:]):
            out.append("verbs run together")
        if prev in STRANDABLE_PREPOSITIONS and re.search(rf"\b{prev}\s+$", kept_text) \
                and (not rest or re.match(r"(?:[,.;:!?]|(?:and|or|but|that|which|who)\b)", rest)):
            out.append(f"preposition without its object ({prev})")
        if word in INFINITIVE_CONSTRUCTIONS and re.match(r"to\s+[a-z]", rest):
            out.append(f"lost {word} of '{word} to'")
        conjunct = re.match(r"(?:and|or)\s+(\w+)", rest)
        if word in COORDINABLE_PREPOSITIONS and (
                conjunct and conjunct.group(1) in COORDINABLE_PREPOSITIONS
                or (len(before) > 1 and before[-1] in ("and", "or") and before[-2] in COORDINABLE_PREPOSITIONS)):
            out.append("lost conjunct of coordinated prepositions")
        if word == "so" and before and not re.search(r"[.!?]\s*$", original[:s]) and _PURPOSE_CLAUSE.match(rest):
            out.append("lost conjunction so (so that)")
        if word in ADJECTIVE_DEGREE_WORDS and nxt and nxt[0] in COLOUR_MATERIAL_ADJECTIVES:
            out.append(f"adjective removed ({word} before a colour or material)")
        if prev in _DEGREE_WORDS and (word not in _DEGREE_WORDS or word == "pretty") and re.search(rf"\b{prev}\s+$", original[:s].lower()) \
                and not (prev == "so" and len(before) > 1 and before[-2] in DO_FORMS):  # "others do so [nearby]"
            out.append("degree word without its head")
    return out


_CLITIC = re.compile(r"(?:^|\s)(?:'s|'re|'m|'ll|'ve|'d|n't|s')(?=\W|$)", re.IGNORECASE)


def _articles_wrong(text: str, article_for) -> list[str]:
    caps = text.upper() == text and any(c.isalpha() for c in text)
    return [f"{a} {w}".lower() for a, w in _ARTICLE.findall(text)
            if not (len(w) == 1 and not w.isdigit()) and article_for(w, all_caps=caps) != a.lower()]


def hazards(original: str, text: str, removed=(), article_for=None) -> list[str]:
    """Names of the damage `text` has that `original` has not (empty: the caption is intact).

    `removed`: (start, end) offsets of the removed words in `original` (for the stranded-preposition check).
    """
    if text == original:
        return []
    article_for = article_for or _article_for
    out = []
    if not text.strip():
        out.append("empty caption")
    if original[:1].isupper() and text[:1].islower():
        out.append("lower-case start")
    before, after = _articles_wrong(original, article_for), _articles_wrong(text, article_for)
    if any(after.count(x) > before.count(x) for x in after):
        out.append("a/an disagreement")
    if len(_STRANDED.findall(text)) > len(_STRANDED.findall(original)):
        out.append("stranded next/near")
    for s, e in removed:
        word = original[s:e].lower()
        rest = original[e:].lstrip().lower()
        prev = original[:s].rstrip().lower().rsplit(None, 1)
        if prev and prev[-1] in ("next", "close", "near", "closer") and word in ("to", "too", "by", "together", "up", "of"):
            out.append(f"stranded {prev[-1]}")
        if word in PREPOSITION_HEADS and re.match(r"(?:to|too|of|by|up|from)\b", rest):
            out.append(f"stranded preposition ({word} {rest.split()[0]})")
        if re.match(r"(?:'s|'re|'m|'ll|'ve|'d|n't)\b", original[e:e + 4], re.IGNORECASE) \
                or (s > 0 and original[s - 1] == "'" and s > 1 and original[s - 2].isalpha()):
            out.append("broken contraction")
    for name, rx in _PUNCT:
        if len(rx.findall(text)) > len(rx.findall(original)):
            out.append(name)
    if len(_CLITIC.findall(text)) > len(_CLITIC.findall(original)):
        out.append("broken contraction or possessive")
    out.extend(grammar_breaks(original, removed))
    return out
