"""Word classes the grammar guard and the readings are built from, and the English adverb lexicon.

The lexicon is WordNet's adverb index, which spaCy's English models ship in their rule-based
lemmatizer tables (`lemma_index["adv"]`, `lemma_exc["adv"]`), so no extra download is needed.
WordNet lists open-class words only; the closed-class adverbs it leaves out are added here.
Every other list is a *class* of words defined by grammar (negations, wh-adverbs, particles,
heads of fixed prepositions, degree words ...), not a list of sentences that went wrong.
"""
from __future__ import annotations

from .table import GROUP_CATEGORIES, WORD_CATEGORY, words_in

# Never removed, in any mode: deleting them inverts the caption's meaning.
NEGATIONS = frozenset({"not", "n't", "nt", "never", "no", "nor", "neither", "nowhere", "nevermore"})

# wh-adverbs introduce questions and relative clauses ("the place where ..."); removing one
# leaves a broken clause.
WH_ADVERBS = frozenset({
    "how", "when", "where", "why", "whence", "whither", "whenever", "wherever", "whereby",
    "wherein", "whereupon", "whereas", "whereabouts",
})

# Closed-class adverbs WordNet does not list (it covers open-class words only).
CLOSED_CLASS_ADVERBS = frozenset({"else", "overall", "thus", "hence", "therein", "herein", "thereby", "that",
                                  "btw", "fyi", "asap", "ok", "okay", "kinda", "sorta", "online"})

# Particles of phrasal verbs when they follow a verb ("sitting down", "set up", "pick it up"):
# part of the verb, and Universal Dependencies tags them ADP (compound:prt). Words that after a
# verb are usually free directional adverbs ("come back", "walk away") are not in this class.
PARTICLES = frozenset({"up", "down", "out", "off", "on", "over", "through", "by", "forth"})
# After an object pronoun ("throw them away", "put it back") these can only be particles.
SPLIT_PARTICLES = PARTICLES | {"away", "back", "around", "in", "about", "together", "apart", "aside", "along"}

# Phrasal verbs whose particle changes what the verb says: without it the verb names another act, or none, so
# the particle is bound (no mode removes it; `guard`: "idiom-particle"). Each line: the verb's forms (every form:
# the lemmatizer is off), its particles, and what the verb says alone. Particles that only add a direction stay
# out ("walking around", "running around", "standing around", "sitting down": the verb alone still says it).
_PHRASAL_IDIOMS = (
    ("hang hangs hung hanging", "around about out"),  # = loiter, spend time; "hanging" alone: suspended
    ("mess messes messed messing", "around about"),  # = play idly; "messing" alone: making a mess
    ("fool fools fooled fooling", "around about"),  # = play idly; "fooling" alone: deceiving
    ("horse horses horsed horsing", "around about"),  # = play roughly; no verb "horse" alone
    ("goof goofs goofed goofing", "around off"),  # = idle; "goofing" alone: blundering
    ("kick kicks kicked kicking", "back"),  # = relax; "kicking" alone: striking with a foot
    ("show shows showed shown showing", "off"),  # = display proudly; "showing" alone needs what is shown
    ("pass passes passed passing", "out"),  # = faint; "passed" alone: gone by
    ("work works worked working", "out"),  # = exercise; "working" alone: at a job
    ("make makes made making", "out"),  # = kiss; "making" alone needs what is made
    ("chill chills chilled chilling", "out"),  # = relax; "chilling" alone: cooling
    ("wipe wipes wiped wiping", "out"),  # = fall (surfing, skiing); "wiping" alone: cleaning
    ("wind winds wound winding", "up"),  # = a pitcher's wind-up; "winding" alone: coiling, turning a crank
    ("line lines lined lining", "up"),  # = form a line; "lined" alone: covered inside, bordered
    ("pull pulls pulled pulling", "over up in"),  # a vehicle stopping or arriving; "pulling" alone: dragging
    ("back backs backed backing", "up"),  # a vehicle reversing; no verb "back" alone here
    ("take takes took taken taking", "off"),  # = leave the ground; "taking" alone needs what is taken
    ("hold holds held holding", "on"),  # = grip, wait; "holding" alone needs what is held
    ("let lets letting", "on in off out"),  # = let a passenger on; "let" alone: allow
    ("break breaks broke broken breaking", "down"),  # = stop working; "broken" alone: damaged
    ("act acts acted acting", "up"),  # = misbehave; "acting" alone: performing
)
PHRASAL_IDIOMS = frozenset((form, particle) for forms, particles in _PHRASAL_IDIOMS
                           for form in forms.split() for particle in particles.split())
PHRASAL_IDIOM_PARTICLES = frozenset(p for _, p in PHRASAL_IDIOMS)

# Words that are prepositions when a locative pro-form follows: "in there", "around here".
PREPOSITIONS = frozenset({
    "in", "inside", "outside", "around", "over", "under", "up", "down", "near", "behind", "along",
    "through", "across", "by", "on", "off", "above", "below", "beneath", "underneath",
})

# Fixed multiword prepositions / expressions whose first word(s) spaCy often tags ADV.
# Removing the head breaks the phrase ("next to a toy" -> "to a toy"), so every word of the
# expression is kept. Matched case-insensitively on consecutive tokens.
FIXED_EXPRESSIONS = tuple(tuple(e.split()) for e in (
    "next to", "close to", "closer to", "closest to", "close by", "close up", "close - up", "up close",
    "up to", "up against", "away from", "across from", "out of", "outside of", "inside of", "ahead of",
    "instead of", "because of", "on top of", "far from", "apart from", "aside from", "along with",
    "together with", "prior to", "according to", "due to", "as well as", "as to",
    "as of", "as for", "rather than", "more than", "less than", "fewer than", "other than",
    "sooner than", "later than", "at least", "at most", "at all", "at best", "at first", "at last",
    "after all", "kind of", "sort of", "no matter", "so that", "such as", "as if", "as though",
    "as soon as", "as long as", "as far as", "in front of",
    "upside down", "inside out", "back and forth", "side by side", "near by", "close together",
    "all over", "all around", "all alone", "far away", "up close", "next too", "close too", "up too",
    "up side down",  # "upside down" split by a typo (guard.split_word keeps "up"; this keeps "down" with it)
))
# The fixed expressions that hold a preposition or conjunction besides the adverb ("next to",
# "instead of", "as well as", "rather than"), and the noun "close up" ("a close up of a pizza"):
# deleting the adverb leaves the other word without its head, and deleting the whole expression takes a
# preposition's or conjunction's job out of the clause. bench/adverbs_quality.py leaves the gold
# adverbs in them out of `recall-g` (grammar-bound); the rest ("upside down", "far away", "all alone")
# are adverb groups that could in principle go as a whole, so their adverbs stay in every recall.
FUNCTION_WORDS_OF_FIXED = frozenset({"to", "too", "of", "as", "than", "from", "with", "at", "that", "for",
                                     "if", "though", "by", "against", "after", "matter", "such", "front"})
GRAMMATICAL_FIXED = tuple(e for e in FIXED_EXPRESSIONS
                          if set(e) & FUNCTION_WORDS_OF_FIXED or e in (("close", "up"), ("close", "-", "up")))
# Heads of those prepositions: a token right after one of them is never removed, and they are
# never removed before "to"/"too"/"of"/"by" (a misspelt "next too a shelf" would otherwise lose "too").
PREPOSITION_HEADS = frozenset({"next", "close", "closer", "closest", "near", "nearer", "up", "out", "ahead",
                               "instead", "prior", "due", "according", "inside", "outside", "away", "apart"})

# Words tagged IN that introduce clauses rather than take an object: an adverb after them is free.
SUBORDINATORS = frozenset({
    "as", "than", "that", "if", "because", "whether", "while", "though", "although", "so", "like",
    "once", "unless", "whereas", "since", "until", "till", "before", "after",
})

# Subordinators that also have adverb uses ("once", "as", "before"): followed by a subject pronoun
# they open a clause ("once I got there"), so they are conjunctions, whatever the tagger says.
CLAUSE_OPENERS = frozenset({
    "once", "as", "since", "before", "after", "until", "till", "while", "because", "though",
    "although", "whereas",
})
SUBJECT_PRONOUNS = frozenset({"i", "you", "he", "she", "we", "they", "it"})

# Comparative and superlative adjective forms: opening a sentence they head an elliptical noun
# phrase or predicate ("Best pizza in town", "Best to call ahead"), not an adverb.
COMPARISON_ADJECTIVES = frozenset({"best", "worst", "better", "worse"})

# Words that can head a prepositional phrase; followed by a proper name they do ("about
# September 23", "around Paris"), while before a number they approximate ("about 20": adverb).
PREPOSITION_WORDS = frozenset({
    "about", "above", "across", "after", "along", "around", "before", "behind", "below", "beneath",
    "beside", "beyond", "by", "down", "in", "inside", "near", "off", "on", "outside", "over", "past",
    "round", "through", "throughout", "under", "underneath", "up", "within", "without",
})

# Prepositions that may take an adverb as their object ("from above", "since recently", "until then", "than
# ever", "as of now", "for now"): deleting that adverb leaves the preposition without an object when nothing
# that could be one follows. "since", "until", "before", "after", "than", "as", "like" are also
# subordinators (SUBORDINATORS); followed by an adverb that ends the phrase they are prepositions.
STRANDABLE_PREPOSITIONS = frozenset({"of", "from", "since", "until", "till", "than", "for", "at", "into", "onto",
                                     "toward", "towards", "upon", "with", "as", "during", "before", "after", "like"})
PREPOSITIONAL_SUBORDINATORS = frozenset({"since", "until", "till", "before", "after", "than", "as", "like"})

# Words that are both prepositions and adverbs/particles: coordinated with another one ("over and under",
# "up and down", "in and out") each is one conjunct of a shared preposition or particle, and deleting one
# leaves "and under the bridge" without its first conjunct.
COORDINABLE_PREPOSITIONS = frozenset({
    "about", "above", "across", "along", "around", "behind", "below", "beneath", "beside", "between", "by",
    "down", "in", "inside", "into", "near", "off", "on", "onto", "out", "outside", "over", "past", "round",
    "through", "under", "underneath", "up", "within", "without", "upstairs", "downstairs", "forward", "backward",
    "forwards", "backwards", "upward", "downward", "away", "back", "forth", "here", "there",
})

# Fixed constructions whose first word is an adverb and whose second is the "to" of an infinitive: "be about
# to jump" (on the point of), "has yet to arrive" (not so far). Deleting the adverb leaves "is to jump",
# "has to arrive": another construction with another meaning.
INFINITIVE_CONSTRUCTIONS = frozenset({"about", "yet"})

# Adjectives a degree modifier cannot grade in the attributive position of a caption: colours and the
# materials and patterns of things. A word that is both a degree adverb and an adjective ("pretty" = fairly
# or attractive, "real" = really or genuine) right before one of them is the adjective: "some pretty pink
# roses", "a real wooden boat" (the degree reading of "pretty" needs a gradable head: "pretty big").
COLOUR_MATERIAL_ADJECTIVES = frozenset({
    "red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "white", "black", "brown", "gray",
    "grey", "silver", "golden", "gold", "tan", "beige", "cream", "ivory", "turquoise", "teal", "navy", "maroon",
    "lavender", "magenta", "crimson", "scarlet", "colorful", "colourful", "multicolored", "multicoloured",
    "multi-colored", "pastel", "wooden", "wood", "metal", "metallic", "plastic", "glass", "stone", "brick",
    "leather", "wicker", "ceramic", "porcelain", "concrete", "steel", "iron", "marble", "paper", "cardboard",
    "striped", "checkered", "plaid", "floral", "spotted", "polka",
})
ADJECTIVE_DEGREE_WORDS = frozenset({"pretty", "real"})

# Verbs of posture and of holding a position, every form (the lemmatizer is off): "still" right after one is
# the adjective "motionless" -- "sitting still", "stood still", "hold still" -- a state the picture shows, not
# the time adverb "still" (= yet), which comes before its verb ("is still sitting").
POSTURE_VERB_FORMS = frozenset({
    "sit", "sits", "sat", "sitting", "stand", "stands", "stood", "standing", "lie", "lies", "lay", "lying",
    "laying", "lays", "hold", "holds", "held", "holding", "stay", "stays", "stayed", "staying", "remain",
    "remains", "remained", "remaining", "keep", "keeps", "kept", "keeping", "pose", "poses", "posed", "posing",
    "freeze", "freezes", "froze", "frozen", "freezing", "hover", "hovers", "hovered", "hovering", "float",
    "floats", "floated", "floating", "hang", "hangs", "hung", "hanging", "wait", "waits", "waited", "waiting",
    "rest", "rests", "rested", "resting", "park", "parks", "parked", "parking",
})

# Adverbs that are also prepositions ("nearby", "outside", "around"): followed by a noun phrase they head a
# prepositional phrase ("parked nearby each other", "looking out the window"), and deleting one leaves that
# noun phrase without a preposition ("parked each other").
PREPOSITIONAL_ADVERBS = PREPOSITION_WORDS | frozenset({
    "nearby", "out", "alongside", "opposite", "atop", "aboard", "amid", "among", "amongst", "beside", "toward",
    "towards", "upstairs", "downstairs", "uphill", "downhill", "underneath", "inside", "outside",
})
# What may open that noun phrase (a number only where the word cannot approximate it: "about 20" is a count).
NOUN_PHRASE_STARTS = frozenset({"DET", "PRON", "PROPN", "NOUN"})

# Deictic adverbs that open an inverted clause ("Here is a pizza", "There goes the bus"): they
# are the clause's subject position, so they stay.
DEICTIC = frozenset({"here", "there"})

# Forms of "be": an adverb right after one, ending the clause, is the predicate
# ("plants that are outside", "the lights are on").
BE_FORMS = frozenset({"be", "is", "are", "was", "were", "been", "being", "am", "'s", "'re", "'m"})
# Verbs of facing and heading: they take an object or a direction ("facing out", "heading home"); at a clause end
# the direction is what is left of it ("facing." is no clause end), so the guard keeps it.
DIRECTION_VERB_FORMS = frozenset({"face", "faces", "faced", "facing", "head", "heads", "headed", "heading"})
# Verbs of standing or gathering somewhere, which take no object: "around"/"about" and a number after one is a
# preposition with its object ("men stand around three riders"), not an approximator ("weighs around three pounds").
GATHERING_VERB_FORMS = frozenset({
    "stand", "stands", "stood", "standing", "sit", "sits", "sat", "sitting", "gather", "gathers", "gathered",
    "gathering", "crowd", "crowds", "crowded", "crowding", "huddle", "huddles", "huddled", "huddling", "cluster",
    "clusters", "clustered", "clustering", "wait", "waits", "waited", "waiting", "mill", "mills", "milled", "milling"})
# Forms of "do": "so" right after one is the pro-form of "do so" ("others do so nearby"), not degree.
DO_FORMS = frozenset({"do", "does", "did", "doing", "done"})

# Words that directly before an adjective can only be its degree modifier ("super delicious",
# "quite cold"): adverbs even when the tagger calls them adjectives.
DEGREE_MODIFIERS = frozenset({
    "very", "super", "quite", "extremely", "incredibly", "really", "totally", "absolutely", "so",
    "too", "fairly", "somewhat", "slightly",
})

# Named groups for keep/remove lists: `keep=("@spatial",)` -- the table's categories and two word classes.
GROUPS = {**{c: words_in(c) for c in GROUP_CATEGORIES}, "negation": NEGATIONS, "wh": WH_ADVERBS,
          "truth": words_in("focus"), "discourse": words_in("stance")}


def expand_words(words) -> frozenset[str]:
    """Lower-cased words of a keep/remove list; `@group` entries expand to `GROUPS[group]`."""
    out: set[str] = set()
    for w in words or ():
        w = w.strip().lower().replace("\u2019", "'")
        if not w:
            continue
        if w.startswith("@"):
            if w[1:] not in GROUPS:
                raise ValueError(f"unknown word group {w!r}; known groups: " + ", ".join("@" + g for g in GROUPS))
            out |= GROUPS[w[1:]]
        else:
            out.add(w)
    return frozenset(out)


def adverb_lexicon(nlp) -> frozenset[str]:
    """WordNet's adverbs (+ comparative forms and closed-class adverbs) from a loaded spaCy model.

    Returns an empty set when the model carries no lemmatizer tables; callers then skip the check.
    """
    try:
        lookups = nlp.get_pipe("lemmatizer").lookups
        index = lookups.get_table("lemma_index")
    except (KeyError, ValueError, AttributeError):
        return frozenset()
    words = set(index.get("adv", ()))
    if lookups.has_table("lemma_exc"):
        words |= set(lookups.get_table("lemma_exc").get("adv", {}))  # better, best, closer, ...
    words |= NEGATIONS | WH_ADVERBS | CLOSED_CLASS_ADVERBS
    return frozenset(w.replace("_", " ") for w in words)


def wordnet_index(nlp, pos: str) -> frozenset[str]:
    """WordNet's lemmas of `pos` ("adj", "noun", "verb") from a loaded spaCy model (empty without tables)."""
    try:
        index = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    except (KeyError, ValueError, AttributeError):
        return frozenset()
    return frozenset(index.get(pos, ()))


def comparative_adjectives(nlp) -> frozenset[str]:
    """Irregular adjective forms ("best", "better", "worse") from WordNet's exception list."""
    try:
        exc = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_exc")
    except (KeyError, ValueError, AttributeError):
        return frozenset()
    return frozenset(exc.get("adj", {}))


class Lexicon:
    """The WordNet word classes one loaded model carries, as the readings and the guard use them."""

    def __init__(self, nlp):
        self.adverbs = adverb_lexicon(nlp)
        self.adjectives = wordnet_index(nlp, "adj") | comparative_adjectives(nlp)
        self.verbs = wordnet_index(nlp, "verb")
        self.other_words = wordnet_index(nlp, "noun") | self.verbs
        # Words English has only as adverbs: a noun tag on one is the tagger's mistake ("herein"). An -s
        # form of a noun or verb ("needs", WordNet's archaic "must needs") is more likely that noun or verb.
        self.only_adverbs = frozenset(w for w in self.adverbs - self.adjectives - self.other_words
                                      if w.isalpha() and w not in NEGATIONS and w not in WH_ADVERBS
                                      and not (w.endswith("s") and w[:-1] in self.other_words))

    def knows(self, w: str) -> bool:
        """`w` is a word WordNet knows, as a lemma or as a regular -ed / -s form of one ("outnumbered", "overpasses"):
        WordNet's index holds lemmas only, and the lemmatizer is off."""
        if w in self.adjectives or w in self.other_words or w in self.adverbs:
            return True
        stems = set()
        if w.endswith("ied") or w.endswith("ies"):
            stems.add(w[:-3] + "y")  # "overcarried"
        if w.endswith("ed"):
            stems |= {w[:-2], w[:-1]}  # "outnumbered", "overused"
            if len(w) > 4 and w[-3] == w[-4]:
                stems.add(w[:-3])  # "overstepped"
        if w.endswith("s"):
            stems.add(w[:-1])  # "backpacks"
            if w.endswith("es"):
                stems.add(w[:-2])  # "overpasses"
        return any(x in self.other_words for x in stems)

    def is_adverb(self, w: str) -> bool:
        """English has an adverb `w`: in WordNet's adverb index (+ closed class), or an -ly word the table lists
        or whose stem is a known adjective. Without tables (an empty index) every word counts."""
        return not self.adverbs or w in self.adverbs or self.is_ly_adverb(w)

    def is_ly_adverb(self, w: str) -> bool:
        """An -ly word WordNet has no entry for, that is still an adverb: one the category table lists (a rare
        derivation, "maniacly"), or one made the way English makes adverbs, from an adjective ("quick" ->
        "quickly", "gentle" -> "gently", "happy" -> "happily", "basic" -> "basically", "full" -> "fully").

        A known adjective, noun or verb ending in -ly ("homely", "family", "comply") is not one; nor is a word
        whose stem is a noun ("brokerly": a typo for "broccoli"; a noun + -ly makes an adjective, "brotherly")
        or no known word (a misspelling the suffix alone would call an adverb): no mode removes a word on its
        suffix alone."""
        if not (w.endswith("ly") and len(w) > 4 and w.isalpha()):
            return False
        if w in WORD_CATEGORY:
            return True
        if w in self.adjectives or w in self.other_words:
            return False
        stem = w[:-2]
        candidates = {stem, stem + "le", stem + "e", stem + "l"}
        if stem.endswith("i"):
            candidates.add(stem[:-1] + "y")  # happily
        if stem.endswith("ical"):
            candidates.add(stem[:-2])  # basically -> basic
        if stem.endswith("l"):
            candidates.add(stem[:-1] + "le")  # "subtly" is in WordNet; a rarer "nimbly" -> nimble
        return bool(candidates & self.adjectives)
