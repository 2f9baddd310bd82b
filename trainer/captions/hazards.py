"""Damage a removal can do to a caption, found by comparing the filtered text with the original.

Each check counts a pattern in the original and in the output and reports it only when the output
has more of it, so captions that were already ungrammatical ("a apple") are not blamed on the
filter. The filter runs these checks on every changed caption and keeps the original when one
fires; bench/adverbs_quality.py and tests/test_adverbs.py scan real COCO captions with them.
"""
from __future__ import annotations

import re

from .adverb_lexicon import PREPOSITION_HEADS
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
    return out
