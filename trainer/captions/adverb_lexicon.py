"""Word lists the adverb filter's rules are built from, and the English adverb lexicon.

The lexicon is WordNet's adverb index, which spaCy's English models ship in their rule-based
lemmatizer tables (`lemma_index["adv"]`, `lemma_exc["adv"]`), so no extra download is needed.
WordNet lists open-class words only; the closed-class adverbs it leaves out are added here.
Every other list is a *class* of words defined by grammar (negations, wh-adverbs, particles,
heads of fixed prepositions, degree words ...), not a list of sentences that went wrong.
"""
from __future__ import annotations

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
    "up to", "up against", "away from", "out of", "outside of", "inside of", "ahead of",
    "instead of", "because of", "on top of", "far from", "apart from", "aside from", "along with",
    "together with", "prior to", "according to", "due to", "as well as", "as to",
    "as of", "as for", "rather than", "more than", "less than", "fewer than", "other than",
    "sooner than", "later than", "at least", "at most", "at all", "at best", "at first", "at last",
    "after all", "kind of", "sort of", "no matter", "so that", "such as", "as if", "as though",
    "as soon as", "as long as", "as far as", "in front of",
    "upside down", "inside out", "back and forth", "side by side", "near by", "close together",
    "all over", "all around", "all alone", "far away", "up close", "next too", "close too", "up too",
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

# Deictic adverbs that open an inverted clause ("Here is a pizza", "There goes the bus"): they
# are the clause's subject position, so they stay.
DEICTIC = frozenset({"here", "there"})

# Forms of "be": an adverb right after one, ending the clause, is the predicate
# ("plants that are outside", "the lights are on").
BE_FORMS = frozenset({"be", "is", "are", "was", "were", "been", "being", "am", "'s", "'re", "'m"})

# Words that directly before an adjective can only be its degree modifier ("super delicious",
# "quite cold"): adverbs even when the tagger calls them adjectives.
DEGREE_MODIFIERS = frozenset({
    "very", "super", "quite", "extremely", "incredibly", "really", "totally", "absolutely", "so",
    "too", "fairly", "somewhat", "slightly",
})

# Focus and proportion adverbs that bound what the caption asserts ("partially eaten" is not
# "eaten", "only one" is not "one", "almost empty" is not "empty"), so `safe` keeps them.
TRUTH_CONDITIONAL = frozenset({
    "almost", "nearly", "half", "halfway", "partially", "partly", "mostly", "barely", "hardly",
    "scarcely", "only", "exactly", "approximately", "roughly",
})
# Focus words bound a count when a number or quantity word follows ("only one", "only a few");
# elsewhere ("is only sitting") they are removable emphasis.
COUNT_FOCUS = frozenset({"only", "exactly", "over", "about", "around", "approximately", "roughly"})
QUANTITY_WORDS = frozenset({"one", "two", "three", "few", "some", "several", "half", "once", "twice"})

# --- categories ------------------------------------------------------------------------------
# Every adverb the filter may remove is put in one category (`categorize` in adverbs.py); `safe`
# removes the categories in SAFE_REMOVED and keeps the rest. Where each comes from:
# - degree: the closed class of degree/intensity modifiers (Quirk et al.'s intensifiers, boosters and
#   downtoners; "very", "so", "too", "super"), listed below;
# - time: time, frequency and aspect adverbs (closed class "now", "still", "already", "just", plus
#   the -ly time/frequency words "recently", "finally", "usually"), listed below;
# - stance: stance and discourse adverbs (epistemic and attitude disjuncts, connectives:
#   "apparently", "probably", "actually", "also"), listed below;
# - manner: attitude and manner-of-mind adverbs (MANNER_OF_MIND below) and every other -ly manner
#   adverb that modifies a verb, found by the dependency parse (head is a verb, not a participle of
#   appearance) -- "sleeping peacefully", "walking happily";
# - spatial (kept): place, direction and arrangement (SPATIAL below; also the words of the fixed
#   spatial phrases "upside down", "side by side");
# - appearance (kept): an adverb whose head in the parse is a past participle or an adjective and
#   that is not a degree word -- "dimly lit", "brightly colored", "well dressed", "densely packed";
# - focus (kept): TRUTH_CONDITIONAL below -- proportion/approximation words that bound what is true;
# - other (kept): any adverb in none of the above; kept because nothing says it is picture-free.
CATEGORIES = ("degree", "manner", "time", "stance", "spatial", "appearance", "focus", "other")
SAFE_REMOVED = frozenset({"degree", "manner", "time", "stance"})
INTENSIFIERS_REMOVED = frozenset({"degree", "manner", "stance"})

# Time, frequency and aspect.
TIME = frozenset({
    "now", "still", "already", "just", "recently", "finally", "currently", "yet", "then", "soon",
    "again", "today", "tonight", "yesterday", "tomorrow", "lately", "once", "later", "earlier",
    "eventually", "ever", "always", "often", "sometimes", "usually", "normally", "typically",
    "generally", "frequently", "occasionally", "rarely", "seldom", "regularly", "constantly",
    "continually", "previously", "formerly", "initially", "originally", "ultimately", "immediately",
    "instantly", "presently", "momentarily", "briefly", "temporarily", "meanwhile", "afterwards",
    "afterward", "nowadays", "daily", "weekly", "monthly", "yearly", "hourly", "nightly", "forever",
    "anymore", "ago", "shortly", "suddenly", "early", "late", "newly", "before", "since", "long",
    "overnight", "beforehand", "thereafter", "someday", "sooner", "first", "twice", "asap",
    "thrice", "firstly", "lastly", "last", "next time",
})
# Attitude and manner of mind: how the subject feels or behaves, not what the camera sees.
MANNER_OF_MIND = frozenset({
    "happily", "quietly", "calmly", "carefully", "patiently", "lazily", "peacefully", "playfully",
    "proudly", "curiously", "eagerly", "anxiously", "nervously", "cheerfully", "gladly", "sadly",
    "angrily", "intently", "attentively", "comfortably", "contentedly", "gently",
    "joyfully", "leisurely", "lovingly", "merrily", "patiently", "politely", "relaxedly", "seriously",
    "sleepily", "sweetly", "thoughtfully", "tiredly", "wearily", "willingly", "cautiously",
    "confidently", "busily", "diligently", "excitedly", "hungrily", "enthusiastically", "silently",
    "quickly", "slowly", "easily", "gracefully", "skillfully", "expertly", "successfully", "effortlessly",
    "hard",
})

# -ly adverbs whose adjective describes how things look or are arranged ("sitting neatly",
# "perched precariously", "stacked haphazardly"): appearance wherever they stand.
APPEARANCE_WORDS = frozenset({
    "neatly", "tidily", "messily", "haphazardly", "evenly", "unevenly", "randomly", "brightly", "dimly",
    "colorfully", "colourfully", "sloppily", "precariously", "densely", "sparsely", "heavily", "lightly",
    "thickly", "thinly", "beautifully", "elegantly", "nicely", "perfectly", "partially", "fully",
    "completely", "neatly", "orderly", "symmetrically", "crookedly", "awkwardly", "formally", "casually",
    "brilliantly", "vividly", "darkly", "softly", "well", "badly", "poorly", "richly", "plainly",
})

# `intensifiers` mode removes only degree, stance and manner adverbs.
DEGREE = frozenset({
    "very", "really", "pretty", "quite", "rather", "fairly", "extremely", "incredibly", "highly",
    "super", "so", "too", "totally", "absolutely", "utterly", "terribly", "awfully", "exceptionally",
    "remarkably", "particularly", "especially", "somewhat", "slightly", "truly", "real", "way",
    "much", "more", "most", "less", "least", "even", "ever", "enough", "unusually", "overly",
    "exceedingly", "immensely", "insanely", "seriously", "reasonably", "relatively", "unbelievably",
    "all", "best", "better", "worse", "worst", "greatly", "hugely", "massively", "deeply", "dearly",
    "kinda", "sorta", "a lot", "lots", "plenty", "as", "that", "damn", "darn", "super",
})
DISCOURSE = frozenset({
    "just", "still", "also", "actually", "basically", "simply", "apparently", "obviously", "clearly",
    "certainly", "definitely", "probably", "possibly", "perhaps", "maybe", "surely", "indeed",
    "however", "anyway", "anyways", "though", "well", "literally", "honestly", "seemingly",
    "supposedly", "presumably", "evidently", "undoubtedly", "naturally", "fortunately",
    "unfortunately", "luckily", "interestingly", "oddly", "strangely", "curiously", "again", "yet",
    "already", "now", "then", "finally", "currently", "suddenly", "even", "kinda", "sorta",
})
# Stance and discourse: DISCOURSE minus its time words ("just", "still", "now" ... are time).
STANCE = (DISCOURSE - TIME - {"well"}) | frozenset({
    "also", "too", "either", "instead", "otherwise", "else", "anyhow", "frankly", "truly", "possibly",
    "surprisingly", "hopefully", "thankfully", "sure", "merely", "simply", "solely", "mainly",
    "largely", "especially", "particularly", "therefore", "further", "furthermore", "moreover",
    "overall", "btw", "herein", "hence", "thus", "besides", "regardless", "nonetheless",
    "nevertheless", "accordingly", "consequently", "additionally", "alternatively", "likewise",
    "similarly", "specifically", "personally", "ok", "okay", "absolutely", "anyways", "instead",
    "hereby", "likely", "unlikely", "arguably", "admittedly", "ideally", "essentially", "virtually",
})
# -ly words that are not manner adverbs (time, frequency, focus): not removed by `intensifiers`.
NOT_MANNER_LY = frozenset({
    "only", "early", "daily", "weekly", "monthly", "yearly", "hourly", "nightly", "recently",
    "lately", "previously", "formerly", "initially", "originally", "eventually", "ultimately",
    "usually", "normally", "typically", "generally", "frequently", "occasionally", "rarely",
    "seldom", "regularly", "constantly", "continually", "nearly", "partially", "partly", "mostly",
    "barely", "hardly", "scarcely", "largely", "mainly", "merely", "solely", "approximately",
    "roughly", "entirely", "completely", "fully", "wholly", "newly", "freshly", "likely",
})

# Spatial adverbs describe the picture; removing them is a user choice (`keep=("@spatial",)`).
SPATIAL = frozenset({
    "together", "outside", "inside", "outdoors", "indoors", "around", "upside", "down", "up",
    "out", "away", "back", "behind", "ahead", "above", "below", "underneath", "nearby", "overhead",
    "upstairs", "downstairs", "here", "there", "sideways", "backwards", "forward", "forwards",
    "upward", "upwards", "downward", "downwards", "aside", "apart", "across", "along", "off",
    "over", "under", "alongside", "abroad", "home", "far", "near", "close", "low", "high",
    "in", "on", "by", "closer", "nearer", "outward", "inward", "aboard", "ashore", "afar", "beside",
    "downhill", "uphill", "downstream", "upstream", "downtown", "uptown", "overseas", "everywhere",
    "somewhere", "anywhere", "elsewhere", "around", "about", "round", "opposite", "sidewise",
    "straight", "vertically", "horizontally", "diagonally", "side", "alone", "single", "file",
    "backward", "onward", "high", "midair", "next", "closely", "tightly", "loosely", "directly",
    "north", "south", "east", "west", "northward", "southward", "eastward", "westward", "wide",
    "right", "left", "sidelong", "lengthwise", "crosswise", "underwater", "offshore", "inland",
})

# Named groups for keep/remove lists: `keep=("@spatial",)`.
GROUPS = {
    "spatial": SPATIAL, "degree": DEGREE, "discourse": DISCOURSE,
    "truth": TRUTH_CONDITIONAL, "negation": NEGATIONS, "wh": WH_ADVERBS, "time": TIME,
    "stance": STANCE, "manner": MANNER_OF_MIND,
}


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
