"""What the caption reads after removal: the words taken out, and the text repaired where a removal touched it
(spacing, orphaned commas and conjunctions, `a`/`an` agreement, a capital first letter)."""
from __future__ import annotations

from ..articles import article_for

_CLOSING = frozenset(",.;:!?)]}%")
_OPENING = frozenset("([{")
_SEPARATORS = frozenset(",;:")
# Length-preserving normalisation (so offsets stay valid): the tagger mis-tags curly apostrophes.
_NORMALISE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def rebuild(doc, original: str, removed: list) -> tuple[str, tuple[tuple[int, int, str], ...]]:
    """The caption without the removed tokens (`removed[i]`: a category or None), repaired where a removal
    touched it; and the removed (start, end, category) offsets into `original`."""
    if not any(removed):
        return original, ()
    n = len(doc)
    caps = is_all_caps(original)
    drop = dropped(doc, removed)
    out: list[list] = []  # [token index, text, whitespace after]
    pending, gap_ws = False, ""
    for i, t in enumerate(doc):
        text = original[t.idx:t.idx + len(t.text)]
        if drop[i]:
            pending, gap_ws = True, t.whitespace_
            continue
        if pending:
            a = out[-1] if out else None
            closing = text[0] in _CLOSING or t.text.startswith("'") or t.lower_ == "n't"
            if a is None:
                if text in _SEPARATORS:
                    continue  # "Clearly, a dog" -> "a dog"
            elif closing:
                if a[1] == "," and text == ",":
                    out.pop()  # a parenthetical ", happily," goes with its commas
                    if out:
                        out[-1][2] = out[-1][2] or " "
                    pending = False
                    continue
                if a[1] in _SEPARATORS and text in ".!?":
                    out.pop()
                if out:
                    out[-1][2] = ""
            else:
                if a[1] not in _OPENING:
                    a[2] = a[2] or gap_ws
                if a[1].lower() in ("a", "an") and doc[a[0]].pos_ == "DET":
                    art = article_for(text, all_caps=caps)
                    a[1] = art.upper() if caps else art.capitalize() if a[1][0].isupper() else art
            pending = False
        out.append([i, text, t.whitespace_])
    if pending and out:
        if out[-1][1] in _SEPARATORS or doc[out[-1][0]].pos_ == "CCONJ":
            out.pop()
        if out:
            out[-1][2] = gap_ws
    new = "".join(text + ws for _, text, ws in out)
    if out and out[0][0] != 0 and original[:1].isupper() and new[:1].islower():
        new = new[0].upper() + new[1:]
    spans = tuple((doc[i].idx, doc[i].idx + len(doc[i].text), removed[i]) for i in range(n) if removed[i])
    return new, spans


# After a verb, a first conjunct removed whole leaves "and" before the second, a modifier of the same verb.
_MODIFIER_AFTER_AND = frozenset({"ADJ", "ADV", "ADP"})
# A removed last conjunct of two modifiers, then what ends the coordination: "and" goes with it.
_AFTER_LAST_CONJUNCT = frozenset({"ADP", "PUNCT", "SCONJ"})


def dropped(doc, removed: list) -> list[bool]:
    """The tokens the caption loses: the removed ones and the coordinators that go with them -- a conjunction
    or list comma between two removed words ("slowly and carefully"), and the "and" after a removed first
    conjunct when both conjuncts modify the verb before them ("sits intently and happy" -> "sits happy",
    "waits patiently and in the shade" -> "waits in the shade"; not "sitting quietly and reading", two verbs),
    or before a removed last conjunct of two modifiers ("decorated neatly and lovingly for" -> "decorated neatly for";
    not "on the side and back", a noun's)."""
    n = len(doc)
    drop = [bool(x) for x in removed]
    for i in range(1, n - 1):
        if doc[i].pos_ != "CCONJ" and doc[i].text != ",":
            continue
        if removed[i - 1] and removed[i + 1]:
            drop[i] = True
        elif doc[i].lower_ != "and":
            continue
        elif removed[i - 1] and doc[i + 1].pos_ in _MODIFIER_AFTER_AND:
            j = i - 1
            while j >= 0 and removed[j]:
                j -= 1
            if j >= 0 and doc[j].pos_ in ("VERB", "AUX") and all(doc[k].pos_ == "ADV" for k in range(j + 1, i)):
                drop[i] = True  # "sits [intently] and happy"
        elif removed[i + 1] and doc[i - 1].pos_ in ("ADV", "ADJ"):
            j = i + 1
            while j < n and removed[j]:
                j += 1
            if all(doc[k].pos_ == "ADV" for k in range(i + 1, j)) and (j == n or doc[j].pos_ in _AFTER_LAST_CONJUNCT):
                drop[i] = True  # "smiles brightly and [happily] at the camera"
    return drop


def is_all_caps(text: str) -> bool:
    """An all-capitals caption ("THIS IS A WELL LIT STATION"): capitals say nothing about acronyms."""
    return text.isupper() and sum(c.isalpha() for c in text) >= 6


def normalise(text: str) -> str:
    """Length-preserving normalisation for tagging: straight quotes; all-caps captions lower-cased
    (the tagger reads every all-caps word as a proper noun)."""
    t = text.translate(_NORMALISE)
    if is_all_caps(t):
        low = t.lower()
        if len(low) == len(t):
            return low
    return t
