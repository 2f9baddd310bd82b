"""`a` or `an`: the article a word takes by its first sound (used by the adverb filter's repair and
by the hazard check; a module of its own so that neither imports the other)."""
from __future__ import annotations


def article_for(word: str, all_caps: bool = False) -> str:
    """`a` or `an` before `word`, by its first sound (letters, digits, acronyms, silent h, "you"-u).

    `all_caps`: the word stands in an all-capitals caption, so capitals do not mark an acronym."""
    w = word.lower()
    if not w:
        return "a"
    if w[0].isdigit():
        return "an" if w.startswith(("8", "11", "18")) else "a"
    if not all_caps and word.isupper() and 1 < len(word) <= 5:  # an acronym read letter by letter: "an FBI agent"
        return "an" if word[0] in "AEFHILMNORSX" else "a"
    if w.startswith(("hour", "honest", "honor", "honour", "heir")):
        return "an"
    if w.startswith(("one", "once", "eu", "ewe", "use", "usu", "uti", "ute", "uni", "ubiq", "uro", "ura", "uri")) \
            and not w.startswith(("unim", "unin", "unid", "unil", "unio")):
        return "a"
    return "an" if w[0] in "aeiou" else "a"
