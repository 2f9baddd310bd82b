"""The one table of adverb categories: which category each adverb falls in, and what each mode does with it.

Read it word by word, as `convert/keymap.py` is read key by key. Every adverb spaCy's tagger finds in
the COCO val2017 captions (derived with `bench/adverbs_quality.py --vocabulary`; 262 word forms, of which
the ones English has no adverb for -- "hydrant", "oven", "skateboard" -- are not adverbs and never
removed) is either listed here or falls under the rule for unlisted words below; `tests/test_adverb_table.py`
checks that. A category is one kind of meaning, and one decision per mode:

| category   | `safe`  | what it says                                    | why                                      |
| ---------- | ------- | ----------------------------------------------- | ---------------------------------------- |
| degree     | removed | how much: very, pretty (= fairly), so, kind of  | a picture shows the thing, not the hedge |
| manner     | removed | how someone feels or acts: happily, intently     | a still picture does not show the mood   |
| time       | removed | when, how often: just (= a moment ago), still   | a picture has no before and after        |
| stance     | removed | the speaker's comment: apparently, probably     | says nothing about the picture           |
| spatial    | kept    | place, direction, arrangement: together, upward | the picture shows it                     |
| appearance | kept    | how it looks: neatly, oddly (shaped), freshly   | the picture shows it                     |
| focus      | kept    | what is true: only, also, all, both, almost     | removing it changes what is claimed      |
| other      | kept    | an adverb in none of the above                  | nothing says it is picture-free          |

`all` removes every category (but never what the grammar guard protects); `intensifiers` removes degree,
manner and stance. A few words have two readings told apart by their role in the parse; those are
listed in ROLE_READINGS with the rule, and nowhere else. An adverb in no list: ending in -ly, it is
appearance when it modifies a participle or adjective ("intricately carved") and manner otherwise
("waving frantically"); any other is `other`.
"""
from __future__ import annotations

CATEGORIES = ("degree", "manner", "time", "stance", "spatial", "appearance", "focus", "other")
SAFE_REMOVED = frozenset({"degree", "manner", "time", "stance"})
INTENSIFIERS_REMOVED = frozenset({"degree", "manner", "stance"})
# Categories a picture shows: reported as "kept visual" in a caption set's provenance.
VISUAL = frozenset({"spatial", "appearance"})

_TABLE = {
    # Intensifiers, boosters, downtoners and comparison (Quirk et al.): the hedge, not the thing.
    "degree": """
        very really pretty quite rather fairly extremely incredibly highly super so too absolutely utterly
        terribly awfully exceptionally remarkably particularly especially somewhat slightly truly real way
        much more most less least ever enough unusually overly exceedingly immensely insanely seriously
        reasonably relatively unbelievably best better worse worst greatly hugely massively deeply dearly
        kinda sorta lots plenty as that damn darn amazingly comically extra""",
    # How someone feels or acts, and speed: a still picture does not show the mood or the tempo.
    "manner": """
        happily quietly calmly carefully patiently lazily peacefully playfully proudly curiously eagerly
        anxiously nervously cheerfully gladly sadly angrily intently attentively pensively intensely
        comfortably contentedly contently gently joyfully leisurely lovingly merrily politely relaxedly
        sleepily sweetly thoughtfully tiredly wearily willingly cautiously confidently busily diligently
        excitedly hungrily enthusiastically silently quickly slowly rapidly swiftly fast faster easily
        gracefully skillfully expertly successfully effortlessly hard idly alertly actively avidly
        impatiently placidly nonchalantly lethargically blankly vehemently mischievously triumphantly
        freely accidentally warmly firmly mechanically organically maniacly""",
    # When and how often.
    "time": """
        now still already just recently finally currently yet then soon again today tonight yesterday
        tomorrow lately once later earlier eventually always often sometimes usually normally typically
        generally frequently occasionally rarely seldom regularly constantly continually previously
        formerly initially originally ultimately immediately instantly presently momentarily briefly
        temporarily meanwhile afterwards afterward nowadays daily weekly monthly yearly hourly nightly
        forever anymore ago shortly suddenly early late before since long overnight beforehand thereafter
        someday sooner first twice thrice firstly lastly last""",
    # The speaker's comment on the sentence, and connectives.
    "stance": """
        apparently obviously clearly certainly definitely probably possibly perhaps maybe surely indeed
        however anyway anyways though literally honestly seemingly supposedly presumably evidently
        undoubtedly naturally fortunately unfortunately luckily interestingly actually basically simply
        instead anyhow frankly surprisingly hopefully thankfully sure therefore
        further furthermore moreover overall btw herein hence thus besides regardless nonetheless
        nevertheless accordingly consequently additionally alternatively likewise similarly specifically
        personally ok okay hereby likely unlikely arguably admittedly ideally essentially virtually""",
    # Place, direction, arrangement, distance ("jointly", "simultaneously" = together: a picture shows a group
    # doing one thing at once, as it shows them side by side).
    "spatial": """
        together jointly simultaneously outside inside outdoors indoors around upside down up out away back behind ahead
        above below underneath nearby overhead upstairs downstairs here there sideways backwards forward
        forwards upward upwards downward downwards aside apart across along off over under alongside
        abroad home far near close low high in on by closer nearer outward inward aboard ashore afar
        beside downhill uphill downstream upstream downtown uptown overseas everywhere somewhere anywhere
        elsewhere about round opposite sidewise straight vertically horizontally diagonally side alone
        solo single file backward onward midair next closely directly north south east west northward
        southward eastward westward wide right left sidelong lengthwise crosswise underwater offshore
        inland atop abreast upright curbside past deep""",
    # How it looks or is made to look: a picture shows it, whatever the word is derived from.
    "appearance": """
        neatly tidily messily haphazardly evenly unevenly randomly dimly colorfully colourfully
        sloppily precariously densely sparsely heavily lightly thickly thinly beautifully elegantly
        nicely perfectly orderly symmetrically crookedly awkwardly formally informally casually
        brilliantly vividly darkly softly well poorly richly plainly plain oddly strangely freshly
        newly finely intricately ornately decoratively artistically artfully elaborately attractively
        lavishly lushly prominently blandly sharply professionally differently digitally snugly tightly
        loosely tight barefoot alike erotically""",
    # What is true: floating quantifiers, focus words, proportion, completeness, approximation, and the words that
    # bound who or what is meant ("someone else", "an otherwise empty fridge", "not ... either" = also not).
    "focus": """
        all both each only also even mainly primarily largely merely solely chiefly predominantly
        mostly almost nearly half halfway partially parcially partly barely hardly scarcely exactly
        approximately roughly completely fully entirely wholly totally else otherwise either""",
}

# word -> category, for every listed word (a word in two lists is an error: see the check below).
WORD_CATEGORY: dict[str, str] = {}
for _category, _words in _TABLE.items():
    for _w in _words.split():
        if _w in WORD_CATEGORY:
            raise AssertionError(f"{_w!r} is listed as both {WORD_CATEGORY[_w]} and {_category}")
        WORD_CATEGORY[_w] = _category


def words_in(category: str) -> frozenset[str]:
    """The words the table lists under `category`."""
    return frozenset(w for w, c in WORD_CATEGORY.items() if c == category)


# Words with two readings, told apart by their role (implemented in `categorize.categorize`):
ROLE_READINGS = {
    "just": "spatial before a place ('just off the shore', 'just above'); focus before a number "
            "('just one'), before a verb of wanting or needing ('just wants to eat' = only wants), before a noun "
            "phrase ('just the top of' = only) and before 'short' / 'shy' ('just short of a dozen' = almost); time "
            "before 'about to' / 'yet to' ('just about to jump': the moment, the "
            "construction is 'about to'); time otherwise ('just finished')",
    "so": "time in 'so far' (= until now); stance opening a clause ('So, ...'); degree otherwise",
    "far": "time in 'so far' (= until now); spatial otherwise",
    "well": "appearance with a participle or adjective ('well lit'); stance opening a clause; manner otherwise",
    "long": "appearance before a participle or adjective ('long haired'); time otherwise",
    "oddly": "stance opening a clause ('Oddly, ...'); appearance otherwise ('oddly shaped')",
    "strangely": "as oddly",
    "about": "focus before a number ('about 20'); spatial otherwise",
    "around": "focus before a number; spatial otherwise",
    "over": "focus before a number ('over 200'); spatial otherwise",
    "even": "degree before a comparative ('even smaller'); focus otherwise ('even the dog')",
    "too": "degree before an adjective, adverb or participle ('too big', 'too much'); focus (= also) otherwise, "
           "at a clause end ('in the kitchen too'); before a noun, determiner, number or base verb no adverb at "
           "all, a typo for 'two'/'to' ('Too zebras', 'going too the park'): never removed",
    "right": "one expression with a deictic, time or direction word after it (RIGHT_PHRASE_HEADS): time before "
             "'now', 'then', 'away' (= immediately; not 'away from'), so 'right now' goes whole where its head may go "
             "and stays whole where it may not ('as of right now'); spatial before a place or direction ('right "
             "here', 'right next to', 'right behind': a short way); never removed without its head, nor its head "
             "without it ('right away' -> 'away' changes the claim)",
    "clearly": "appearance when it modifies a word of seeing or being visible (VISIBILITY_WORDS: 'seen clearly', "
               "'clearly visible', 'clearly marked': how visible, a picture shows it); stance otherwise, as a "
               "sentence adverb ('clearly a dog': the speaker's comment)",
    "casually": "appearance when it modifies a word of dressing (DRESS_WORDS: 'dressed casually', 'casually "
                "dressed', 'casually attired': how the clothes look, a picture shows it); manner otherwise, as "
                "behaviour ('casually plays the Wii': how someone acts, which a still picture does not show)",
    "brightly": "manner with a word of smiling next to it (SMILE_WORDS: 'smiles brightly', as 'smiles warmly': how "
                "someone acts); appearance otherwise ('brightly colored', 'brightly lit': how it looks)",
    "badly": "degree (= severely) before a word of damage or need (DAMAGE_WORDS: 'badly bruised', 'badly "
             "damaged', 'badly needs'); appearance otherwise ('badly parked', 'badly drawn': how it looks done)",
    "formally": "as casually ('formally dressed' / 'formally greeting')",
    "informally": "as casually ('dressed informally' / 'chatting informally')",
}
# The words "right" makes one expression with ("right now", "right here", "right next to"), and those of them
# where the expression is time ("right now", "right then", "right away" = immediately).
RIGHT_PHRASE_HEADS = frozenset({"now", "then", "here", "there", "away", "after", "before", "next", "behind",
                                "beside", "above", "below", "under", "over", "outside", "inside", "in", "on", "at",
                                "by", "near", "into", "onto", "through", "off", "up", "down", "along", "across",
                                "past", "underneath", "beneath", "ahead", "alongside", "around"})
RIGHT_TIME_HEADS = frozenset({"now", "then", "away"})
# Words of seeing and being visible: "clearly" with one of them says how visible something is (appearance).
VISIBILITY_WORDS = frozenset({
    "see", "sees", "seen", "saw", "seeing", "visible", "invisible", "show", "shows", "shown", "showing", "displayed",
    "display", "displays", "marked", "labeled", "labelled", "legible", "readable", "illegible", "written", "printed",
    "painted", "defined", "outlined", "depicted", "pictured", "photographed", "viewed", "viewable", "noticeable",
    "identifiable", "distinguishable", "discernible", "recognizable", "recognisable", "lit", "focused", "visibly",
    "read", "reads", "spelled", "spelt", "indicated", "signed", "posted", "drawn"})
# Words of smiling: "brightly" next to one says how someone smiles (manner, as "warmly"), not how a thing looks.
SMILE_WORDS = frozenset({"smile", "smiles", "smiled", "smiling", "grin", "grins", "grinned", "grinning", "beam",
                         "beams", "beamed", "beaming"})
# Words of damage and need: "badly" before one says how much (degree, = severely); before any other word it says
# how something looks done (appearance: "badly parked").
DAMAGE_WORDS = frozenset({
    "bruised", "damaged", "hurt", "injured", "wounded", "burned", "burnt", "broken", "beaten", "beating", "battered",
    "torn", "ripped", "scratched", "dented", "rusted", "rusty", "cracked", "scarred", "stained", "chipped", "bent",
    "smashed", "crushed", "wrecked", "mangled", "sunburned", "sunburnt", "worn", "faded", "weathered", "overgrown",
    "need", "needs", "needed", "needing", "want", "wants", "wanted", "wanting"})
# Words of dressing: "casually", "formally", "informally" with one of them say how the clothes look (appearance);
# with any other word they say how someone acts (manner). The other appearance words keep one reading: "neatly",
# "nicely", "elegantly", "beautifully", "professionally" describe the look of what is made or done ("neatly
# stacked", "elegantly set", "professionally decorated") whatever the verb, and a picture shows it.
# The words read by DRESS_WORDS (their entries in ROLE_READINGS).
DRESS_REGISTER = frozenset({"casually", "formally", "informally"})
DRESS_WORDS = frozenset({
    "dress", "dresses", "dressed", "dressing", "attired", "clad", "clothed", "garbed", "outfitted", "costumed",
    "suited", "wear", "wears", "wore", "worn", "wearing"})
# Words of the degree list that are also adjectives, and where the adjective reading wins (implemented in
# `readings.not_an_adverb`; the words stay `degree` everywhere else). A degree modifier grades a gradable head
# ("pretty big" = fairly big); before a colour, a material or a pattern in a noun phrase the caption describes
# the thing, so the word is its adjective ("some pretty pink roses", "a real wooden boat"). The list of those
# heads is `words.COLOUR_MATERIAL_ADJECTIVES`. Checked on the first gold set and the UD dev file: neither has
# "pretty"/"real" before such a word, so the rule changes none of their decisions.
ADJECTIVE_READINGS = {
    "pretty": "adjective (attractive) before a colour, material or pattern ('some pretty pink roses') and before "
              "a participle that modifies a noun ('pretty painted toe nails': a participle of making has no degree); "
              "degree (= fairly) before any other adjective or adverb ('pretty big')",
    "real": "adjective (genuine) before a colour, material or pattern ('a real wooden boat'); degree otherwise",
}
# Two-word hedges: "kind of" and "sort of" written apart are "kinda" and "sorta" (degree, = somewhat: "a man kind
# of high in the air", "looks sort of sad"), both words removed together. Implemented in `readings.hedge`: the pair
# before an adjective, an adverb or a verb, with no determiner, number, adjective, pronoun or preposition before
# it; "some kind of cake", "a kind of old truck", "what sort of" are the noun (= type) and never removed.
DEGREE_HEDGES = frozenset({"kind", "sort"})
# Lexicalised noun compounds whose first word the table lists as an adverb: the pair is one noun, and its first
# word is part of that noun, not an adverb ("a closeup still life of oranges": the painting genre, not "life" that
# goes on "still"; "maps of the Far East": the region). Implemented in `readings.noun_compound`: the word right
# before one of its nouns, which the tagger tags as a noun, is no adverb in any mode, whatever stands before it
# (the adjective reading of `readings.not_an_adverb` needs a determiner, an adjective or a preposition there, and
# misses "Closeup still life", "painting still life", "taking still photos"). Only pairs a dictionary lists as one
# noun; "still" as time before a verb or a participle ("is still standing", "still holding") has no noun after it
# and is decided as before.
NOUN_COMPOUNDS = {
    "still": frozenset({"life", "lifes", "lives",  # the painting genre
                        "water", "waters",  # water that does not flow or sparkle
                        "photo", "photos", "photograph", "photographs", "image", "images", "frame", "frames",
                        "shot", "shots"}),  # a still: a single photograph, or one frame of a film
    "far": frozenset({"east", "west"}),  # the regions ("the Far East")
    "near": frozenset({"east"}),
}
# Words that bound a count when a number or a quantity word follows ("only one", "about 20").
COUNT_FOCUS = frozenset({"only", "exactly", "over", "about", "around", "approximately", "roughly", "just"})
QUANTITY_WORDS = frozenset({"one", "two", "three", "few", "some", "several", "half", "once", "twice"})
# Named groups for keep/remove lists (`keep=("@spatial",)`): the table's categories, and the grammar classes.
GROUP_CATEGORIES = ("degree", "manner", "time", "stance", "spatial", "appearance", "focus")

