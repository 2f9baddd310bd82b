"""Which tokens of one tagged caption go, and as what category: the readings, the guard and the table put together.

Order, per token: the user's keep list; the user's remove list; quoted text and reduplicative expressions
("back to back") and negations and wh-words (never: `protect`); degree
words, the hedges "kind of" / "sort of" and connective "so" the tagger mislabels; anything else not an adverb (`readings`); the grammar
guard (every mode) and the meaning guard (not `all`); then the table's category decides by mode. Last, on the
whole caption: a modifier goes with its head, and removals that would leave a coordinator or a preposition
dangling are put back (`coordination.dangling`), unless the coordinator can go with them (`repair.dropped`).
"""
from __future__ import annotations

from .categorize import categorize, right_phrase
from .coordination import dangling
from .guard import breaks_sentence, changes_meaning, purpose_so
from .protect import protected
from .readings import degree_modifier_missed, discourse_so, hedge, missed_adverb, not_an_adverb
from .table import VISUAL
from .words import FIXED_EXPRESSIONS, NEGATIONS, WH_ADVERBS


def match_runs(words: list[str], phrases) -> list[bool]:
    """Which positions of `words` are covered by one of `phrases` (tuples of lower-case words)."""
    covered = [False] * len(words)
    present = set(words)
    for phrase in phrases:
        if phrase[0] not in present:  # most captions hold none of the ~80 phrases: one set test each
            continue
        k = len(phrase)
        for i in range(len(words) - k + 1):
            if words[i] == phrase[0] and tuple(words[i:i + k]) == phrase:
                for j in range(i, i + k):
                    covered[j] = True
    return covered


def decide(doc, words: list[str], lex, all_mode: bool, removed_categories, keep_phrases, remove_phrases):
    """Per token: the category it is removed as, or None (kept); and the visual adverbs kept (word, category)."""
    keep = match_runs(words, keep_phrases) if keep_phrases else [False] * len(words)
    forced = match_runs(words, remove_phrases) if remove_phrases else [False] * len(words)
    never = protected(doc, words)  # quoted text, "back to back": no mode removes them (the guard sees them as fixed)
    fixed = [a or b for a, b in zip(match_runs(words, FIXED_EXPRESSIONS), never)]
    out: list[str | None] = []
    kept: list[tuple[str, str]] = []
    for i, t in enumerate(doc):
        w = words[i]
        if keep[i]:
            out.append(None)
        elif forced[i]:
            out.append(categorize(doc, i) if t.pos_ == "ADV" else "user")
        elif never[i] or w in NEGATIONS or w in WH_ADVERBS or t.tag_ == "WRB":
            out.append(None)
        elif "degree" in removed_categories and not fixed[i] and degree_modifier_missed(doc, i, w) \
                and not breaks_sentence(doc, i, words, fixed, lex):
            out.append("degree")  # adverbs the tagger mislabels ("sooooo", "super delicious"): every mode
        elif "degree" in removed_categories and hedge(doc, i, words):  # fixed as the noun "kind of" otherwise
            out.append("degree")  # "kind of high": both words, whatever the tagger called them
        elif "stance" in removed_categories and discourse_so(doc, i, w) and not purpose_so(doc, i):
            out.append("stance")
        elif (t.pos_ != "ADV" and not missed_adverb(doc, i, w, lex, all_mode)) \
                or (t.pos_ == "ADV" and not_an_adverb(doc, i, words, lex)):
            out.append(None)
        elif breaks_sentence(doc, i, words, fixed, lex) or (not all_mode and changes_meaning(doc, i, words)):
            out.append(None)
        else:
            cat = categorize(doc, i)
            if all_mode or cat in removed_categories:
                out.append(cat)
            else:
                out.append(None)
                if cat in VISUAL:
                    kept.append((w, cat))
    take_stranded_modifiers(doc, words, out, keep, lambda j: breaks_sentence(doc, j, words, fixed, lex)
                            or not_an_adverb(doc, j, words, lex))
    for i in range(len(doc) - 1):  # "right now", "right next to": "right" goes or stays with its head
        if right_phrase(doc, i) and not keep[i] and not forced[i]:
            out[i] = out[i + 1]
    while run := dangling(doc, words, out, forced):  # a removal that leaves "and" or "on" without its other half
        for j in run:
            out[j] = None
    return out, kept


def take_stranded_modifiers(doc, words, out, keep, guard=lambda i: None) -> None:
    """An adverb kept only by its category goes with the adverb it modifies when that one is removed.

    Why: a category switch can keep a modifier whose head goes ("very still" with degree kept -> "very";
    "almost always" in safe mode -> "almost smiling", which says something else). Heads first, so a chain
    ("very very slowly") goes whole; negation stays, it is never removed; nor does a word the grammar
    guard protects or a token the tagger calls an adverb that is not one ("on skateboard outside": the noun
    the parser hung from "outside"), which `guard(i)` names.
    """
    changed = True
    while changed:
        changed = False
        for i, t in enumerate(doc):
            head = t.head.i
            if (out[i] is None and not keep[i] and head != i and out[head] is not None and t.dep_ == "advmod"
                    and t.pos_ == "ADV" and words[i] not in NEGATIONS and words[i] not in WH_ADVERBS
                    and not guard(i)):
                out[i] = out[head]
                changed = True
