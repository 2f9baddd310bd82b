"""Would deleting this word break the sentence? The grammar guard every mode passes through.

`breaks_sentence` names the grammar a deletion would break (a rule name) or returns None; no mode,
`all` included, removes a word it names. It also names the half of a unit a deletion would split: a word split
by a typo ("over joyed") and the particle of a phrasal verb whose sense it makes ("hanging around").
`changes_meaning` names the words whose deletion keeps the grammar but changes what the caption claims
(particles, counts); `all` ignores those, `safe` and `intensifiers` keep them.
"""
from __future__ import annotations

from .readings import parsed
from .table import COUNT_FOCUS, QUANTITY_WORDS, WORD_CATEGORY
from .words import (
    BE_FORMS, COORDINABLE_PREPOSITIONS, DEICTIC, DIRECTION_VERB_FORMS, DO_FORMS, GATHERING_VERB_FORMS,
    INFINITIVE_CONSTRUCTIONS, NEGATIONS, NOUN_PHRASE_STARTS, PARTICLES, PHRASAL_IDIOM_PARTICLES, PHRASAL_IDIOMS,
    PREPOSITION_HEADS, PREPOSITIONAL_ADVERBS, PREPOSITIONAL_SUBORDINATORS, PREPOSITIONS, SPLIT_PARTICLES,
    STRANDABLE_PREPOSITIONS, SUBORDINATORS, words_in,
)

DEGREE = words_in("degree")
# Words a determiner + noun + particle noun ends in ("a close up", "the thumbs up", "a warm up").
_NOUN_PARTICLES = PARTICLES | {"in", "away", "back"}
_DETERMINERS = frozenset({"a", "an", "the", "this", "that", "these", "those", "his", "her", "their", "its", "my",
                          "your", "our"})


def _result_clause(doc, i: int) -> bool:
    """`doc[i]` ("so") opens a result clause: "so much its all over him", "so big that ...", "so big it fell".

    A subject counts when its clause hangs from the word "so" modifies in the parse, or when no comma
    or conjunction stands between ("so big it fills the table", however it was parsed): in "with
    the demand so high, the question arises" the subject belongs to another clause."""
    from .categorize import so_far

    if i + 1 >= len(doc) or not (doc[i + 1].pos_ in ("ADJ", "ADV") or doc[i + 1].lower_ in ("much", "many")):
        return False  # "so" + degree head is the only shape of a result clause ("So I went" is discourse)
    if so_far(doc, i):
        return False
    degree_head = doc[i + 1]
    for j in range(i + 2, min(i + 5, len(doc))):
        if doc[j].lower_ == "that" or doc[j].lower_ in ("its", "it's"):
            return True
        if doc[j].dep_ in ("nsubj", "nsubjpass") and (
                doc[j].head == degree_head or degree_head in doc[j].head.ancestors
                or not any(t.is_punct or t.pos_ == "CCONJ" for t in doc[i + 2:j])):
            return True
    return False


# Finite verb tags and modals: what the verb of a clause with its own subject is.
_FINITE_TAGS = frozenset({"MD", "VBZ", "VBP", "VBD"})
# What a subject noun phrase is made of, from its first word to its head.
_SUBJECT_POS = frozenset({"DET", "ADJ", "NOUN", "PROPN", "PRON", "NUM"})
_SENTENCE_END = frozenset({".", "!", "?"})


def purpose_so(doc, i: int) -> bool:
    """`doc[i]` ("so") is the conjunction "so (that)" / "so" of result: inside a sentence, right before a clause
    with its own subject and a finite verb or modal ("holding a horse, so a little boy can take a ride",
    "lifting the dog so it can see"). Deleting it runs two clauses together. A "so" that opens the sentence
    ("So the dog is sitting") is the discourse adverb, and "so" before an adjective is degree."""
    if doc[i].lower_ != "so" or i == 0 or doc[i - 1].text in _SENTENCE_END:
        return False
    seen_subject = False
    for j in range(i + 1, min(i + 7, len(doc))):
        t = doc[j]
        if t.tag_ in _FINITE_TAGS and seen_subject:
            return True
        if t.pos_ not in _SUBJECT_POS or t.tag_ in _FINITE_TAGS:
            return False
        if t.pos_ in ("NOUN", "PROPN", "PRON"):
            seen_subject = True
    return False


_GLUABLE_PREPOSITIONS = ("into", "onto", "in", "on", "at", "to", "of")


def glued_preposition(word: str, lex) -> bool:
    """`word` is a verb with a preposition written onto it, a typo ("cutin half", "foldedin half", "puton"): the
    stem is a known verb of three letters or more, and no lexicon knows the whole as a verb, an adjective or an
    adverb (WordNet's noun "cutin", a plant wax, is no reading of a caption's "cutin half"). It is a preposition
    like any other: the word after it is its object."""
    if not (lex.adverbs and lex.verbs and word.isalpha()) or word in lex.adverbs or word in lex.adjectives \
            or word in lex.verbs:
        return False
    return any(word.endswith(p) and len(word) - len(p) >= 3 and word[:-len(p)] in lex.verbs
               for p in _GLUABLE_PREPOSITIONS)


# What the second half of a word split by a typo is not: a function word, an adverb, a number or a present
# participle ("back up", "up on" = upon, "far away", "is out running": each half is a word of its own there, and
# an -ing verb after an adverb is a verb of its own: "out standing in the rain" is no "outstanding").
_NOT_A_SECOND_HALF = frozenset({"ADP", "PART", "DET", "PRON", "CCONJ", "SCONJ", "AUX", "ADV", "NUM", "PUNCT", "SYM",
                                "INTJ", "X"})


def split_word(doc, i: int, words: list[str], lex) -> bool:
    """Token `i` is the first half of a word a typo split in two: written together with the next word, one space
    between, it makes a word WordNet knows, or a regular -ed / -s form of one ("over joyed" = overjoyed, "over
    cast" = overcast, "out doors" = outdoors, "under way" = underway, "out numbered" = outnumbered), and the next
    word is an open-class word (a noun, an adjective, a participle or a verb other than an -ing form). Deleting
    the first half leaves the second alone, another word or none ("Kid is joyed", "the players are numbered"), so
    no mode removes it."""
    if lex is None or not lex.adverbs or i + 1 >= len(doc) or doc[i].whitespace_ != " ":
        return False
    nxt = doc[i + 1]
    second = words[i + 1]
    if not (words[i].isalpha() and second.isalpha() and len(second) >= 2) or nxt.pos_ in _NOT_A_SECOND_HALF \
            or nxt.tag_ == "VBG":
        return False
    return lex.knows(words[i] + second)


def idiom_particle(doc, i: int, words: list[str]) -> bool:
    """Token `i` is the particle of a phrasal verb whose sense the particle makes (`words.PHRASAL_IDIOMS`: "hanging
    around" = loitering, "kicking back" = relaxing, "working out" = exercising): right after the verb, or after
    the verb's object where the parse hangs the particle from the verb ("blowing the candles out"). Deleting it
    leaves a whole sentence that claims another act ("people hanging in a living room"), so no mode removes it.
    A particle that only adds a direction ("walking around") is not in the table and is decided as before."""
    w = words[i]
    if w not in PHRASAL_IDIOM_PARTICLES or i == 0:
        return False
    if (words[i - 1], w) in PHRASAL_IDIOMS and doc[i - 1].tag_.startswith("VB"):
        return True
    if not parsed(doc):
        return False
    head = doc[i].head
    return head.i < i and doc[i].dep_ in ("prt", "advmod") and head.tag_.startswith("VB") \
        and (words[head.i], w) in PHRASAL_IDIOMS


def _infinitive_follows(doc, i: int) -> bool:
    """A to-infinitive or for-phrase completes the degree phrase that starts at `i`, before any
    punctuation: "too far to reach", "big enough to fit", "enough for two"."""
    for j in range(i + 1, min(i + 5, len(doc))):
        t = doc[j]
        if t.is_punct or t.pos_ in ("CCONJ", "SCONJ"):
            return False
        if t.lower_ == "for" or (t.lower_ in ("to", "too") and j + 1 < len(doc) and doc[j + 1].tag_ == "VB"):
            return True
        if t.pos_ in ("VERB", "NOUN", "PROPN", "PRON", "DET"):
            return False
    return False


# Particles that are what "be" predicates of its subject ("the lamp is on", "the lights are off", "the door is up"):
# they stay before a prepositional phrase or a complex preposition too ("is on next to a bed", "are off in the
# kitchen"), where deleting them leaves a sentence that claims something else ("is next to a bed").
_PREDICATE_PARTICLES = frozenset({"on", "off", "up", "out", "away", "down", "over"})
# Words that as the predicate of "be" name a state of the subject, not a place ("is online", "is afloat"): before a
# prepositional phrase the phrase would become the predicate and the sentence claim a place instead ("someone is
# online inside a cafe" -> "someone is inside a cafe"), so they stay there too. Place words ("is outside on his
# bike") are left out: the phrase after them says the same kind of thing and they stay removable in `all`.
_PREDICATE_STATES = frozenset({"online", "offline", "okay", "ok", "alright", "asleep", "awake", "alive", "afloat",
                               "ablaze", "aglow", "adrift", "aloft", "awry", "amiss"})


def _is_predicate(doc, i: int, words: list[str], lex) -> bool:
    """Token `i` (at a clause end) is what "be" predicates: `is outside`, `was very fast`,
    `are different and alike`: removing it would leave the clause without a predicate."""
    j = i - 1
    while j >= 0 and words[j] in DEGREE and doc[j].pos_ == "ADV":
        j -= 1  # "was [very] fast"
    if j >= 0 and words[j] in BE_FORMS:
        return True
    if lex.adjectives and words[i] in lex.adjectives and j >= 1 and doc[j].pos_ == "CCONJ":
        return doc[j - 1].pos_ == "ADJ"  # "different and alike"
    return False


def _stranded_preposition(doc, i: int, words: list[str]) -> bool:
    """Token `i` is the object of a preposition, past any words that modify it ("as of [right] now", "from
    [way] above"), and nothing after it could be the preposition's object instead: deleting it strands the
    preposition ("closed since.", "better than."). A subordinator ("since", "until", "than", "as") counts
    only when the adverb ends its phrase; it would otherwise open a clause ("since recently opened")."""
    n = len(doc)
    j = i - 1
    while j >= 0 and j >= i - 3 and doc[j].pos_ in ("ADV", "NOUN") and (
            words[j] in DEGREE or words[j] in ("right", "just", "way", "far", "much", "even")) \
            and not doc[j].is_punct:
        j -= 1  # modifiers of the object: "right now", "way above", "very recently"
    if j < 0 or words[j] not in STRANDABLE_PREPOSITIONS or doc[j].pos_ not in ("ADP", "SCONJ"):
        return False
    nxt = doc[i + 1] if i + 1 < n else None
    ends = nxt is None or nxt.is_punct or nxt.pos_ in ("CCONJ",) \
        or nxt.lower_ in ("that", "which", "who") or nxt.tag_ in ("WDT", "WP")
    if words[j] in PREPOSITIONAL_SUBORDINATORS:
        return ends
    return ends or (nxt.pos_ in ("ADP", "SCONJ", "VERB", "AUX") and not attributive_participle(doc, i + 1))


# Place adverbs that are nouns too ("the inside"), and the prepositions they are the object of at a clause end,
# whatever the tagger calls the preposition ("written on inside": RP). "turned on inside" keeps "inside" too.
_PLACE_NOUNS = frozenset({"inside", "outside"})
_BEFORE_PLACE_NOUN = frozenset({"on", "in", "at", "from", "to", "into", "onto", "of"})


def attributive_participle(doc, j: int) -> bool:
    """`doc[j]` is a participle that modifies the noun after it ("of already peeled oranges"): an adverb before it
    is the participle's, not the object of the preposition before the adverb."""
    return j + 1 < len(doc) and doc[j].tag_ in ("VBN", "VBG") and doc[j + 1].pos_ in ("NOUN", "PROPN")


# Degree words that compare with what is shown ("so good" = this good, "that big"): under a negation, deleting one
# turns the claim around.
_DEMONSTRATIVE_DEGREE = frozenset({"so", "that"})


def _negated(doc, words: list[str], i: int) -> bool:
    """A negation stands before token `i` in its clause, at most three words back ("not very", "never looked so")."""
    for j in range(i - 1, max(i - 4, -1), -1):
        if doc[j].is_punct or doc[j].pos_ in ("CCONJ", "SCONJ"):
            return False
        if words[j] in NEGATIONS:
            return True
    return False


def _after_do(words: list[str], i: int) -> bool:
    """A form of "do" stands right before token `i`, or before the degree words in front of it ("did so well")."""
    j = i - 1
    while j >= 0 and words[j] in DEGREE:
        j -= 1
    return j >= 0 and words[j] in DO_FORMS


def breaks_sentence(doc, i: int, words: list[str], fixed: list[bool], lex) -> str | None:
    """Why deleting token `i` alone leaves a sentence less grammatical than it was (a rule name), or None: a
    construction the word is part of, or the role it plays in its phrase."""
    return _construction_break(doc, i, words, fixed, lex) or _phrase_break(doc, i, words, fixed, lex)


def _construction_break(doc, i: int, words: list[str], fixed: list[bool], lex) -> str | None:
    """The word is part of a construction: a fixed expression, a split word, an idiom, "so ... that", "enough to",
    a degree word that compares under a negation, "do so", "do well", "face out"."""
    t = doc[i]
    w = words[i]
    n = len(doc)
    nxt = doc[i + 1] if i + 1 < n else None
    prev = doc[i - 1] if i > 0 else None
    if fixed[i]:
        return "fixed"  # a word of "next to", "out of", "as well as", "upside down", the noun "close up"
    if split_word(doc, i, words, lex):
        return "split-word"  # "Kid is over joyed", "an over cast sky": the first half of one word a typo split
    if idiom_particle(doc, i, words):
        return "idiom-particle"  # "people hanging around in a room" (= loitering): "hanging in a room" is another act
    if prev is not None and words[i - 1] in ("next", "close", "closer", "near"):
        return "after-preposition-head"  # "next too a shelf", "close together": the head would be stranded
    if w == "ago" and prev is not None and not prev.is_punct:
        return "postposition"  # "two years ago", "from a long time ago": it closes the time phrase it follows
    if w in PREPOSITION_HEADS and nxt is not None and nxt.lower_ in ("to", "too", "of", "by", "up", "from"):
        return "preposition-head"  # "close to", "up to", "out of" the tagger split across a typo or a word
    if nxt is not None and nxt.lower_ == "of":
        return "of-complement"  # an adverb takes no "of": "apiece of luggage" is "a piece of", "inside of it"
    if nxt is not None and not t.whitespace_ and (nxt.text.startswith("'") or nxt.lower_ == "n't"):
        return "clitic"  # "there's", "here's": the clitic would be left alone
    if (w == "so" and _result_clause(doc, i)) or (prev is not None and words[i - 1] == "so" and _result_clause(doc, i - 1)):
        return "so-that"  # "so much (that) it's all over him": the result clause needs its "so"
    if w == "so" and purpose_so(doc, i):
        return "so-conjunction"  # "holding a horse, so a boy can ride": "so (that)" joins two clauses
    if w == "so" and prev is not None and words[i - 1] in DO_FORMS and (
            nxt is None or nxt.pos_ not in ("ADJ", "ADV") or WORD_CATEGORY.get(nxt.lower_) in ("spatial", "focus")):
        return "pro-form"  # "others do so nearby": "so" stands for the verb phrase ("do so much" is degree)
    if w in _DEMONSTRATIVE_DEGREE and nxt is not None and nxt.pos_ in ("ADJ", "ADV") and _negated(doc, words, i):
        return "negated-degree"  # "never looked so good" (= this good) -> "never looked good": the negation then
        # denies the plain word, the opposite of the caption ("not very loud" -> "not loud" only hedges less: it goes)
    if w == "well" and _after_do(words, i):
        return "do-complement"  # "the team did well", "doing very well": "did in the game" is no sentence
    if prev is not None and words[i - 1] in DIRECTION_VERB_FORMS and prev.pos_ == "VERB" \
            and WORD_CATEGORY.get(w) == "spatial" \
            and (nxt is None or nxt.is_punct or nxt.pos_ in ("CCONJ", "SCONJ")):
        return "direction-complement"  # "sitting in a bed facing out": "facing." needs what it faces
    if w in ("enough", "too") and _infinitive_follows(doc, i + (w == "too")):
        return "complement"  # "big enough to fit" -> "big to fit", "too far to reach" -> "far to reach"
    if (prev is not None and words[i - 1] == "too" or nxt is not None and nxt.lower_ == "enough") \
            and _infinitive_follows(doc, i + (nxt is not None and nxt.lower_ == "enough")):
        return "complement"  # the head of that phrase: "too far to reach" -> "too to reach"
    return None


def _phrase_break(doc, i: int, words: list[str], fixed: list[bool], lex) -> str | None:
    """The word plays a role in its phrase that nothing else fills: a preposition's object, a preposition with
    its object, half of a hyphenated compound or of "as ... as", a noun's particle, the link between two verbs,
    the predicate of "be", an inverted "here is"."""
    t = doc[i]
    w = words[i]
    n = len(doc)
    nxt = doc[i + 1] if i + 1 < n else None
    prev = doc[i - 1] if i > 0 else None
    if prev is not None and prev.tag_ == "IN" and words[i - 1] not in SUBORDINATORS \
            and (nxt is None or nxt.pos_ in ("PUNCT", "ADP", "CCONJ", "SCONJ", "VERB", "AUX")) \
            and not attributive_participle(doc, i + 1):
        return "prep-object"  # the object of a preposition: "seen from above on the grass", "for now"
    if w in _PLACE_NOUNS and prev is not None and words[i - 1] in _BEFORE_PLACE_NOUN \
            and (nxt is None or nxt.is_punct or nxt.pos_ in ("CCONJ", "SCONJ")):
        return "prep-object"  # "written on inside" (= on the inside): a preposition the tagger called a particle
    if prev is not None and w in lex.other_words and glued_preposition(words[i - 1], lex) \
            and (nxt is None or nxt.pos_ not in ("NOUN", "PROPN", "PRON", "DET", "NUM", "ADJ")):
        return "prep-object"  # the object of a preposition glued to its verb by a typo: "cutin half next to"
    if _stranded_preposition(doc, i, words):
        return "prep-object"  # "since recently", "until then", "than ever", "as of right now", "from way above"
    if w in INFINITIVE_CONSTRUCTIONS and nxt is not None and nxt.lower_ == "to" and i + 2 < n \
            and doc[i + 2].tag_ == "VB":
        return "infinitive-construction"  # "is about to jump" -> "is to jump", "has yet to arrive" -> "has to arrive"
    if w == "better" and prev is not None and words[i - 1] in ("had", "'d"):
        return "infinitive-construction"  # "had better go" -> "had go"
    if w in COORDINABLE_PREPOSITIONS and (
            (nxt is not None and nxt.pos_ == "CCONJ" and i + 2 < n and words[i + 2] in COORDINABLE_PREPOSITIONS)
            or (prev is not None and prev.pos_ == "CCONJ" and i > 1 and words[i - 2] in COORDINABLE_PREPOSITIONS)):
        return "coordinated-preposition"  # "over and under the bridge", "up and down", "in and out": one conjunct
    if w in PREPOSITIONAL_ADVERBS and nxt is not None and nxt.text != "-" and (
            nxt.pos_ in NOUN_PHRASE_STARTS or (nxt.pos_ == "NUM" and (
                w not in COUNT_FOCUS or (prev is not None and words[i - 1] in GATHERING_VERB_FORMS)))):
        return "preposition-with-object"  # "parked nearby each other", "looking out the window": it heads a phrase
    if w in PREPOSITIONAL_ADVERBS and nxt is not None and nxt.lower_ == "and" and i + 2 < n \
            and doc[i + 2].tag_ == "NN" and words[i + 2][:1] in "aeiou":
        return "preposition-with-object"  # "tracks under and overpass": "and" is a typo for the article "an"
    if w in PREPOSITIONS and nxt is not None and nxt.lower_ in DEICTIC:
        return "prep-deictic"  # a preposition with a pro-form object: "inside there"
    if (prev is not None and prev.text == "-" and i > 1 and not doc[i - 2].whitespace_) \
            or (nxt is not None and nxt.text == "-" and not t.whitespace_):
        return "hyphen"  # inside a hyphenated compound ("brightly-coloured"): removal leaves a stray hyphen
    if w == "as" and "as" in words[i + 2:i + 4]:
        return "as-as"  # comparative "as big as": the first "as" is half of the construction
    if w in _NOUN_PARTICLES and prev is not None and (
            (i > 1 and words[i - 2] in _DETERMINERS and prev.pos_ in ("NOUN", "ADJ", "ADV", "PROPN"))
            or (prev.tag_ in ("NN", "NNS") and parsed(doc) and t.head.i == i - 1)
            or words[i - 1] == "thumbs"):
        return "noun-particle"  # the last word of a noun: "a close up", "the thumbs up", "a warm up"
    if prev is not None and nxt is not None and prev.pos_ == "VERB" and nxt.pos_ == "VERB" \
            and nxt.tag_ in ("VBG", "VBN", "VB", "VBD", "VBZ", "VBP"):
        return "between-verbs"  # "looking upward holding a cup" -> "looking holding a cup"
    clause_end = nxt is None or nxt.is_punct or nxt.pos_ in ("CCONJ", "SCONJ")
    before_phrase = not clause_end and (w in _PREDICATE_PARTICLES or w in _PREDICATE_STATES) \
        and (nxt.pos_ in ("ADP", "ADV") or fixed[i + 1])
    if (clause_end or before_phrase) and _is_predicate(doc, i, words, lex):
        return "predicate"  # the predicate: "plants that are outside", "service was very fast"
    if w in DEICTIC and (prev is None or prev.is_punct) and nxt is not None \
            and (nxt.pos_ in ("AUX", "VERB") or nxt.lower_ in BE_FORMS):
        return "deictic-inversion"  # "Here is a pizza"
    return None


def changes_meaning(doc, i: int, words: list[str]) -> str | None:
    """Why deleting token `i` keeps the grammar but changes the claim (a rule name), or None: `all` ignores it."""
    w = words[i]
    nxt = doc[i + 1] if i + 1 < len(doc) else None
    if w in COUNT_FOCUS and nxt is not None and (nxt.pos_ == "NUM" or nxt.lower_ in QUANTITY_WORDS):
        return "count-focus"  # "only one", "about 20": the number depends on it
    if i > 1 and w in SPLIT_PARTICLES and doc[i - 1].pos_ == "PRON" and doc[i - 2].pos_ == "VERB":
        return "split-particle"  # only a particle can follow the verb's object pronoun: "throw them away"
    if w in PARTICLES and i > 0 and doc[i - 1].pos_ == "VERB":
        return "particle"  # "sitting down", "set up"
    return None
