"""Which words does no mode ever touch, whatever their tag? Quoted text and reduplicative fixed expressions.

- Quoted text: words between quotation marks are text shown in the picture (a sign, a label, a shirt: `a sign
  that says "Princess Parking Only"`), or words someone says; they are what the picture shows, letter for
  letter, so no word inside them is removed. Straight or curly double quotes, and single quotes used as quotes
  (`a 'Stop' sign`, `‘Do Not Enter’`): the filter tags a normalised text (`repair.normalise`: curly quotes made
  straight, offsets unchanged), so only straight marks are seen here. A single quote opens only at the start or
  after a space or an opening bracket, before a non-space, and closes only after a non-space, before the end, a
  space or punctuation: an apostrophe ("don't", "the dogs' bowls") is never a quotation mark.
- Unquoted text of a label: an -ly word and a participle right before a noun that carries printed text ("an
  organically grown strip tag", "a freshly baked label"): with no quotation marks the caption cannot say whether
  the pair is the caption's description or the words on the tag, and deleting it from the tag's text misquotes
  the picture, so both stay (a removal is never needed; a misquote is damage).
- Reduplicative fixed expressions "N to N", "N by N", "N in N", "N on N" (also hyphenated): "back to back",
  "side by side", "face to face", "hand in hand", "one by one", "bumper to bumper", "nose to nose". The tagger
  calls the first word an adverb in some of them ("back to back"); deleting any word breaks the idiom ("to
  back"), so all three stay.
"""
from __future__ import annotations

import re

# Double quotes pair in order; a single quote pairs only where it cannot be an apostrophe (see the docstring).
_QUOTED = re.compile(r'"[^"\n]+"'
                     r"|(?:^|(?<=[\s(\[{]))'(?=[^\s'])[^\n]*?(?<=[^\s'])'(?=$|[\s.,;:!?)\]}-])")
REDUPLICATING = frozenset({"to", "by", "in", "on"})


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of `text` inside quotation marks (the marks included)."""
    return [m.span() for m in _QUOTED.finditer(text)] if ('"' in text or "'" in text) else []


def reduplicated(words: list[str]) -> list[bool]:
    """Which positions of `words` (lower-case tokens) belong to "N to N", "N by N", "N in N", "N on N", hyphens
    between allowed ("back-to-back")."""
    n = len(words)
    out = [False] * n
    for i, w in enumerate(words):
        if w not in REDUPLICATING or not (0 < i < n - 1):
            continue
        a = i - 1 - (words[i - 1] == "-" and i > 1)
        b = i + 1 + (words[i + 1] == "-" and i + 2 < n)
        if words[a] == words[b] and words[a].isalpha() and words[a] not in REDUPLICATING:
            for k in range(a, b + 1):
                out[k] = True
    return out


# Nouns that carry printed text; `label_text` reads an adverb-participle pair right before one as its text.
TEXT_NOUNS = frozenset({"tag", "tags", "label", "labels", "sign", "signs", "sticker", "stickers", "stamp", "stamps",
                        "banner", "banners", "placard", "placards", "poster", "posters", "logo", "logos"})


def label_text(doc, words: list[str]) -> list[bool]:
    """Positions of an -ly adverb before a participle that modify a text-bearing noun (TEXT_NOUNS), at most two
    nouns of a compound between ("an organically grown strip tag")."""
    n = len(words)
    out = [False] * n
    for i in range(n - 2):
        if not (words[i].endswith("ly") and doc[i].pos_ == "ADV" and doc[i + 1].tag_ == "VBN"):
            continue
        j = i + 2
        while j < n and j <= i + 4 and doc[j].pos_ in ("NOUN", "PROPN") and words[j] not in TEXT_NOUNS:
            j += 1
        if j < n and words[j] in TEXT_NOUNS and doc[j].pos_ == "NOUN":
            out[i] = True
    return out


def protected(doc, words: list[str]) -> list[bool]:
    """Per token of `doc`: True where no mode may remove it (quoted text, a label's unquoted text, a reduplicative
    expression)."""
    out = [a or b for a, b in zip(reduplicated(words), label_text(doc, words))]
    for a, b in quoted_spans(doc.text):
        for t in doc:
            if t.idx < b and t.idx + len(t.text) > a:
                out[t.i] = True
    return out
