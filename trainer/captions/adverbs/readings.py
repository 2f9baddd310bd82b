"""Is this token an adverb here? The tagger's `ADV` checked against the word and the parse, both ways.

`not_an_adverb` names why a token the tagger calls an adverb is another part of speech in this
sentence ("a pretty girl", "a still lake": adjectives; "hydrant": no adverb at all); `missed_adverb`
finds adverbs the tagger gave another tag ("sooooo cute", "super delicious", "contained herein").
"""
from __future__ import annotations

import re

from .table import COUNT_FOCUS, DEGREE_HEDGES, NOUN_COMPOUNDS, WORD_CATEGORY, words_in
from .words import (
    ADJECTIVE_DEGREE_WORDS, CLAUSE_OPENERS, COLOUR_MATERIAL_ADJECTIVES, COMPARISON_ADJECTIVES, DEGREE_MODIFIERS,
    NOUN_PHRASE_STARTS, POSTURE_VERB_FORMS, PREPOSITION_WORDS, SUBJECT_PRONOUNS,
)

DEGREE = words_in("degree")
STANCE = words_in("stance")
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
# Dependents only a noun takes: an adverb the parser gives one of them is used as a noun ("a garbage back").
NOUN_DEPENDENTS = frozenset({"det", "amod", "compound", "nummod", "poss"})
# What may open a noun phrase before a word tagged ADV: a determiner or a possessive, an adjective.
_NP_OPENERS = frozenset({"DET", "ADJ"})
# Expressive lengthening ("sooooo", "veryyy"): a run of 3+ equal letters.
LENGTHENED = re.compile(r"(\w)\1{2,}")


def lengthened_degree(w: str) -> bool:
    """An expressively lengthened degree word: "sooooo", "veryyy", "prettty"."""
    return bool(LENGTHENED.search(w)) and any(LENGTHENED.sub(r"\1" * k, w) in DEGREE for k in (1, 2))


def parsed(doc) -> bool:
    return doc.has_annotation("DEP")


# Words a "than" follows as they follow a comparative ("other than", "rather than", "more than").
_BEFORE_THAN = frozenset({"more", "less", "fewer", "other", "rather"})


def not_an_adverb(doc, i: int, words: list[str], lex) -> str | None:
    """Why the `ADV`-tagged token `i` is not an adverb in this sentence (a rule name), or None."""
    t = doc[i]
    w = words[i]
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    prev = doc[i - 1] if i > 0 else None
    if not lex.is_adverb(w) and not lengthened_degree(w):
        return "not-in-lexicon"  # English has no adverb "hydrant", "oven"
    if noun_compound(doc, i, words):
        return "noun-compound"  # "Closeup still life of oranges", "the Far East": the first word of one noun
    if w in lex.adjectives and nxt is not None and nxt.tag_ in ("NN", "NNS") and nxt.text != "-" \
            and (not parsed(doc) or t.head.i == i + 1 or nxt.head.i == i) \
            and (prev is None or prev.pos_ in ("DET", "ADJ", "NUM", "PRON", "PUNCT", "ADP", "CCONJ")
                 or (prev.pos_ == "ADV" and prev.lower_ in DEGREE)):
        return "adjective"  # before the noun it describes: "a pretty girl", "a very pretty dress", "a still lake"
    if w == "too" and nxt is not None and (nxt.tag_ in NOUN_TAGS or nxt.pos_ in ("DET", "NUM") or nxt.tag_ == "VB"):
        return "typo-two-to"  # "Too zebras stand", "going too the park", "want too eat": "two"/"to", not degree
    if w == "then" and prev is not None and (prev.tag_ in ("JJR", "RBR") or prev.lower_ in _BEFORE_THAN) \
            and nxt is not None and (nxt.pos_ in NOUN_PHRASE_STARTS or nxt.pos_ in ("ADJ", "NUM")):
        return "typo-than"  # "bigger then the scissors", "other then a dog": "than" after a comparative, not time
    if w == "there" and determiner_typo_there(doc, i, words):
        return "typo-their"  # "with there cell phone" (= their): the noun phrase needs it as its determiner
    if possessed_noun(doc, i, words, lex):
        return "possessed-noun"  # "scratching it's back", "licking his back": a possessive makes the word a noun
    if w == "still" and motionless(words, i):
        return "motionless"  # "sitting still", "stood perfectly still": the adjective, a state the picture shows
    if w in ADJECTIVE_DEGREE_WORDS and nxt is not None and nxt.lower_ in COLOUR_MATERIAL_ADJECTIVES:
        return "adjective-before-colour"  # "some pretty pink roses", "a real wooden boat": no degree of a colour
    if w in ADJECTIVE_DEGREE_WORDS and nxt is not None and nxt.tag_ == "VBN" and i + 2 < len(doc) \
            and doc[i + 2].pos_ == "NOUN":
        return "adjective-before-participle"  # "pretty painted toe nails": no degree of "painted", a look
    if noun_phrase_slot(doc, i, w, lex):
        return "noun-phrase-slot"  # "the back door", "an upstairs bedroom", "a plastic trash back (bag)"
    if participle_compound_head(doc, i, w, lex):
        return "participle-compound-head"  # "across a snow filled plain": the noun the phrase ends in
    if compound_head(doc, i, w, lex):
        return "compound-head"  # "a black garbage back (bag) on the floor": the noun the compound ends in
    starts_sentence = prev is None or (prev.is_punct and prev.text != "-")
    if starts_sentence and w in COMPARISON_ADJECTIVES:
        return "comparison-adj"  # "Best pizza in town", "best to call ahead"
    if w in CLAUSE_OPENERS and nxt is not None and nxt.lower_ in SUBJECT_PRONOUNS:
        return "clause-opener"  # a conjunction: "once I got there", "as we said"
    if w in PREPOSITION_WORDS and nxt is not None and nxt.pos_ == "PROPN":
        return "prep-name"  # a preposition heading a name: "about September 23", "around Paris"
    if prev is not None and prev.lower_ == "please" and w in lex.other_words:
        return "imperative"  # the verb after "please": "please forward a copy"
    if nxt is not None and nxt.text == "-" and i + 2 < len(doc) and w in lex.adjectives \
            and not w.endswith("ly") and doc[i + 2].pos_ in ("NOUN", "VERB", "ADJ"):
        return "compound-modifier"  # first half of "double-dealing", "straight-laced" (hyphen spaced or not)
    if starts_sentence and w in lex.adjectives and w not in DEGREE and w not in STANCE \
            and nxt is not None and nxt.pos_ in ("NOUN", "PROPN", "ADJ", "ADP", "AUX", "VERB") and t.is_title:
        return "headline-adj"  # a headline adjective: "Best pizza in town", "Over priced"
    if prev is not None and prev.pos_ == "DET" and w in lex.adjectives and w not in DEGREE and w not in STANCE \
            and not (nxt is not None and nxt.tag_ in ("JJR", "RBR")):  # "an even smaller": degree
        return "in-noun-phrase"  # inside a noun phrase: "the best moving experience", "the inside of"
    return None


# Possessive determiners, and the typos for them a caption may hold ("it's back" = its back, "there" = their).
POSSESSIVES = frozenset({"my", "your", "his", "her", "its", "our", "their", "whose"})
# "her" is also the object pronoun ("pushing her back"): for it only the tagger's PRP$ counts.
_UNAMBIGUOUS_POSSESSIVES = POSSESSIVES - {"her"}
_TIME_WORDS = words_in("time")


def determiner_typo_there(doc, i: int, words: list[str]) -> bool:
    """ "there" right after a preposition or a verb and right before a noun (or an adjective and a noun) that
    nothing else opens: the determiner "their" misspelt ("with there cell phone", "holding there phones"). The
    place adverb "there" ends its phrase or is followed by a verb or a preposition ("sitting there eating",
    "over there by the door"); a time noun after it is an adverbial ("there today")."""
    if i == 0 or doc[i - 1].pos_ not in ("ADP", "VERB") or i + 1 >= len(doc):
        return False
    k = i + 1
    if doc[k].pos_ == "ADJ" and k + 1 < len(doc):
        k += 1
    return doc[k].tag_ in ("NN", "NNS") and words[k] not in _TIME_WORDS and not doc[k].is_punct


def possessed_noun(doc, i: int, words: list[str], lex) -> bool:
    """Token `i` follows a possessive -- a possessive determiner ("his back"), the typo "it's" ("scratching it's
    back"), a noun's "'s" the tagger marks possessive ("the dog's back") -- and English has it as a noun: it is
    the possessed noun, the head of that noun phrase; removing it leaves the possessive without its noun."""
    if i == 0 or lex is None or words[i] not in lex.other_words:
        return False
    prev = doc[i - 1]
    if prev.tag_ in ("PRP$", "POS") or words[i - 1] in _UNAMBIGUOUS_POSSESSIVES:
        return True
    return words[i - 1] in ("'s", "\u2019s") and i > 1 and words[i - 2] == "it"


def noun_compound(doc, i: int, words: list[str]) -> bool:
    """Token `i` and the next make a lexicalised noun compound of `table.NOUN_COMPOUNDS` ("still life", "still
    photos", "the Far East"), the next one tagged as a noun and separated by a space only: token `i` is
    the first word of that noun, and deleting it names another thing ("Closeup life of oranges"). A verb after
    "still" ("still shot the ball") is no noun, so the time adverb is read there as before."""
    nouns = NOUN_COMPOUNDS.get(words[i])
    if nouns is None or i + 1 >= len(doc) or words[i + 1] not in nouns or not doc[i].whitespace_:
        return False
    return doc[i + 1].tag_ in NOUN_TAGS


def motionless(words: list[str], i: int) -> bool:
    """ "still" at `i` follows a verb of posture or of holding a position, past a degree word ("sitting
    still", "standing perfectly still", "hold still"): the adjective "motionless". The time adverb "still"
    (= yet) stands before its verb ("is still sitting") or elsewhere."""
    j = i - 1
    if j >= 0 and (words[j] in DEGREE or words[j] in ("perfectly", "completely", "totally", "very")):
        j -= 1
    return j >= 0 and words[j] in POSTURE_VERB_FORMS


def compound_head(doc, i: int, w: str, lex) -> bool:
    """The `ADV`-tagged token `i` ends a noun compound: a place word English also has as a noun ("back",
    "front", "side", "home") right after a singular noun that a determiner or an adjective opens ("a black
    garbage back", "the house front"). However the parser attached it, it is the head noun of that phrase
    (a typo or a noun use), and removing it names another thing. Only place words qualify: a time word
    after a noun phrase ("a bike today") is the adverb."""
    if i < 2 or WORD_CATEGORY.get(w) != "spatial" or w not in lex.other_words:
        return False
    prev = doc[i - 1]
    return prev.tag_ == "NN" and doc[i - 2].pos_ in _NP_OPENERS and not doc[i - 2].is_punct


def participle_compound_head(doc, i: int, w: str, lex) -> bool:
    """The `ADV`-tagged token `i` ends a noun phrase whose modifier is a noun + participle compound ("a snow
    filled plain", "the grass covered hill", "a hand made table"): a determiner or an adjective, a noun, a past
    participle, then a word English has as a noun, ending the phrase. The determiner needs a head noun and only
    this word can be it. A place or time word there is the adverb of the participle ("a car parked outside",
    "a photo taken today"), so those are left to the other rules."""
    if i < 3 or w not in lex.other_words or WORD_CATEGORY.get(w) in ("spatial", "time") or w in DEGREE:
        return False
    part, noun = doc[i - 1], doc[i - 2]
    if part.tag_ != "VBN" or noun.tag_ not in NOUN_TAGS:
        return False
    j = i - 3
    if j >= 1 and doc[j].text == "-":
        return False  # "a snow-covered ..." is one token pair short; the hyphen case is the tagger's adjective
    opener = doc[j]
    if opener.pos_ not in _NP_OPENERS or opener.is_punct:
        return False
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    return nxt is None or nxt.is_punct or nxt.pos_ in ("ADP", "CCONJ", "SCONJ", "VERB", "AUX")


def noun_phrase_slot(doc, i: int, w: str, lex=None) -> bool:
    """The `ADV`-tagged token `i` stands where a noun phrase needs an adjective or a noun: between a
    determiner or adjective and the noun ("the back door", "a big outside area"), or it heads a noun
    phrase by the parse (it has a determiner, adjective or compound dependent, or a compound noun before it
    hangs from it or from a later word: "a plastic trash back (bag) sitting on the floor"). A typo or a noun
    use; removing it changes the thing named. A degree word before a noun is left to the other rules."""
    if w in DEGREE:
        return False
    prev = doc[i - 1] if i > 0 else None
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    if prev is not None and prev.pos_ in _NP_OPENERS and nxt is not None and nxt.tag_ in ("NN", "NNS") \
            and nxt.text != "-" and prev.text != "-":
        return True
    if not parsed(doc):
        return False
    t = doc[i]
    if lex is not None and w in lex.only_adverbs:
        return False  # a word English has only as an adverb heads no noun phrase: "Cat lethargically on ..."
    if any(c.dep_ in NOUN_DEPENDENTS for c in t.children):
        return True
    return prev is not None and prev.pos_ == "NOUN" and prev.dep_ == "compound" and prev.head.i >= i


def degree_modifier_missed(doc, i: int, w: str) -> bool:
    """A degree adverb the tagger missed: a lengthened spelling ("sooooo nice", "veryyy"), or a
    degree word it called an adjective right before an adjective ("super delicious")."""
    if LENGTHENED.search(w):
        return any(LENGTHENED.sub(r"\1" * k, w) in DEGREE for k in (1, 2))
    return w in DEGREE_MODIFIERS and doc[i].pos_ == "ADJ" and i + 1 < len(doc) and doc[i + 1].tag_ in ("JJ", "JJR", "JJS")


_NOUN_KIND_BEFORE = frozenset({"DET", "NUM", "ADJ", "PRON", "ADP"})
_GRADABLE = frozenset({"ADJ", "ADV", "VERB"})


def hedge(doc, i: int, words: list[str]) -> bool:
    """`doc[i]` is half of the degree hedge "kind of" / "sort of" (table.DEGREE_HEDGES: "kind of high",
    "looks sort of sad"), not the noun of "some kind of cake" or "a kind of old truck", whatever the tagger
    called the two words."""
    k = i if words[i] in DEGREE_HEDGES else i - 1 if words[i] == "of" and i > 0 else -1
    if k < 0 or words[k] not in DEGREE_HEDGES or k + 2 >= len(doc) or words[k + 1] != "of":
        return False
    if k > 0 and (doc[k - 1].pos_ in _NOUN_KIND_BEFORE or doc[k - 1].tag_ == "POS"):
        return False
    return doc[k + 2].pos_ in _GRADABLE


def discourse_so(doc, i: int, w: str) -> bool:
    """Clause-initial connective "so" the tagger calls a conjunction ("So, ...", ", so I left"):
    a discourse adverb (UD tags it ADV); "so that" and degree "so big" do not match."""
    return w == "so" and doc[i].tag_ in ("CC", "IN") and (i == 0 or doc[i - 1].is_punct) \
        and i + 1 < len(doc) and doc[i + 1].pos_ in ("PRON", "PUNCT", "PROPN", "DET", "NOUN") \
        and doc[i + 1].lower_ != "that"


def approximator(doc, i: int, w: str) -> bool:
    """A count-bounding word the tagger called a preposition, which the parse attaches to a number
    ("around 1,100 cartoons", "over 200 weapons"): an adverb; "jumps over two poles" is a preposition."""
    t = doc[i]
    return w in COUNT_FOCUS and t.tag_ == "IN" and t.dep_ == "quantmod" and t.head.like_num


def missed_adverb(doc, i: int, w: str, lex, all_mode: bool) -> bool:
    """An adverb the tagger gave another part of speech, decided without it: a word WordNet knows
    only as an adverb tagged as a noun ("contained herein", "sitting indoors"); in `all`, an approximator."""
    if doc[i].tag_ in NOUN_TAGS and w in lex.only_adverbs:
        return True
    return all_mode and approximator(doc, i, w)
