"""Issue #23's classes of error, in both modes: the grammar guard, adjective readings, focus words,
visible manner, and one decision per category. The captions are illustrations written for the tests,
not lines of the held-out gold set."""
from __future__ import annotations

import pytest

from trainer.captions.adverbs import AdverbFilter, SpacyModelMissing, load_spacy_model
from trainer.captions.hazards import hazards


@pytest.fixture(scope="module")
def filters():
    try:
        nlp = load_spacy_model()
    except SpacyModelMissing as e:
        pytest.skip(str(e))
    out = {m: AdverbFilter(m, model=nlp) for m in ("safe", "all")}
    for f in out.values():
        f.check_hazards = False  # the rules alone must keep these sentences whole
    return out


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A man big enough to fit in the box.",  # "big to fit"
    "A kite too far to reach.",  # "far to reach" / "too to reach"
    "A man giving a thumbs up.",  # a noun ending in a particle
    "A close up of a pizza.",
    "A woman carrying apiece of luggage.",  # a typo for "a piece": "carrying of luggage"
    "A man looking upward holding a cup.",  # "looking holding a cup"
    "A bowl mainly of fruit.",
])
def test_grammar_guard_holds_in_every_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A pretty girl holding an umbrella.", "A pretty girl holding an umbrella."),  # pretty = attractive
    ("A very pretty dress on a hanger.", "A pretty dress on a hanger."),  # "a very dress" never
    ("A pretty big dog on a couch.", "A big dog on a couch."),  # pretty = fairly
    ("Fine china on a table.", "Fine china on a table."),
    ("A kindly old man on a bench.", "A kindly old man on a bench."),
])
def test_adjective_readings_are_checked_against_the_parse(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


@pytest.mark.parametrize("caption", [
    "The kids are all smiling.", "Two dogs both sitting on a couch.", "Boats just off the shore.",
    "A man also holding a cup.", "A plate with only one slice.", "A kitchen primarily white.",
    "An oddly shaped vase.", "Two people jointly holding a knife.", "Messily stacked plates on a table.",
    "A freshly baked pie next to a newly built house.", "A brightly lit room.", "A neatly made bed.",
    # v14: words that bound who or what is meant, and "too" = also at a clause end, are focus
    "Someone else is holding a kite on the beach.", "An otherwise empty room with a chair.",
    "A dog is in the yard too.", "Some people are in the kitchen too",
])
def test_safe_keeps_focus_words_and_visible_manner(filters, caption):
    assert filters["safe"].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A man intently watching TV.", "A man watching TV."),
    ("A man attentively watching TV.", "A man watching TV."),
    ("A man pensively watching TV.", "A man watching TV."),
    ("Eggs gently placed in a bowl.", "Eggs placed in a bowl."),
    ("Eggs carefully placed in a bowl.", "Eggs placed in a bowl."),
    # v14: "just" before "about to" is time; only "about" is bound
    ("A cat is just about to jump off the table.", "A cat is about to jump off the table."),
    ("A girl is smiling and just about to fall down.", "A girl is smiling and about to fall down."),
    # v14: ordinary removals still happen next to the new rules ("too" grading a quantity is degree)
    ("There are too many people here.", "There are many people here."),
    ("A very old man is just sitting there.", "An old man is sitting there."),
    ("Too cats sleeping on a very soft bed.", "Too cats sleeping on a soft bed."),
    ("A man is happily playing, and a woman is too.", "A man is playing, and a woman is too."),
])
def test_one_category_one_decision(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


def test_all_mode_removes_what_safe_keeps_where_grammar_allows(filters):
    assert filters["all"].filter_text("Two people jointly holding a knife.").text == "Two people holding a knife."
    assert filters["all"].filter_text("A man also holding a cup.").text == "A man holding a cup."


@pytest.mark.parametrize("original,damaged,start,end,name", [
    ("A man big enough to fit.", "A man big to fit.", 10, 16, "lost complement"),
    ("A kite too far to reach.", "A kite far to reach.", 7, 10, "lost complement"),
    ("A kite too far to reach.", "A kite too to reach.", 11, 14, "lost complement"),
    ("carrying apiece of luggage", "carrying of luggage", 9, 15, "of without its head"),
    ("A man giving a thumbs up.", "A man giving a thumbs.", 22, 24, "noun without its particle"),
    ("A man looking upward holding a cup", "A man looking holding a cup", 14, 20, "verbs run together"),
    ("a very pretty dress", "a very dress", 7, 13, "degree word without its head"),
    # the classes of the next round
    ("The store closed since recently.", "The store closed since.", 23, 31, "preposition without its object"),
    ("The bread is better than ever.", "The bread is better than.", 25, 29, "preposition without its object"),
    ("A man about to throw a ball.", "A man to throw a ball.", 6, 11, "lost about"),
    ("A train has yet to come.", "A train has to come.", 12, 15, "lost yet"),
    ("Kids run in and out of a house.", "Kids run and out of a house.", 9, 11, "lost conjunct"),
    ("Kids run in and out of a house.", "Kids run in and of a house.", 16, 19, "lost conjunct"),
    ("some pretty pink roses", "some pink roses", 5, 11, "adjective removed"),
])
def test_hazards_name_each_grammar_break(original, damaged, start, end, name):
    assert original[start:end].isalpha()  # the span is the removed word
    found = hazards(original, damaged, [(start, end)])
    assert any(h.startswith(name) for h in found), found


@pytest.mark.parametrize("original,kept_ok,start,end", [
    ("A room looking utterly disgusting.", "A room looking disgusting.", 15, 22),  # a degree word: no verb pair
    ("A cat walking with its tail up.", "A cat walking with its tail.", 28, 30),  # a possessed noun, not "a close up"
    ("A big dog.", "A big dog.", 0, 0),
    ("Two boys surf while others do so nearby.", "Two boys surf while others do so.", 33, 39),  # "do so": no degree
])
def test_hazards_leave_intact_sentences_alone(original, kept_ok, start, end):
    assert hazards(original, kept_ok, [(start, end)] if end else []) == []


# The next round of #23 (tests/data/README.md): classes named after set 2's first run, fixed in general and
# tested on sentences written for these tests.
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "The store has been closed since recently.",  # "closed since."
    "The dog waited by the door until then.",  # "until."
    "The bread is better than ever.",  # "than."
    "A dog napping as of now that is cute.",
    "A photo of the city taken from way above.",  # "from way."
    "A man is about to throw a frisbee.",  # "be about to" -> "is to throw"
    "Two boys on a dock, about to jump into the lake.",
    "The train has yet to arrive at the station.",  # "has to arrive"
    "Kids running in and out of the house.",  # one conjunct of a coordinated preposition
    "A boy walking up and down the stairs.",
    "A boat passing over and under the bridges.",
    "A woman holding some pretty pink roses.",  # pretty = attractive before a colour
    "A kitchen with a pretty white counter.",
    "A real wooden boat on a lake.",
    "A girl standing at the back door of a house.",  # a word tagged ADV in a noun phrase
    "A small plastic trash back sitting on the sidewalk.",  # a typo for "bag", a noun by the parse
])
def test_grammar_guard_holds_for_the_next_round_classes(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


def test_an_adverb_object_keeps_its_preposition_and_may_lose_its_modifier(filters):
    caption = "A cat is asleep on the couch as of right now."  # "as of right", "as of."
    assert filters["safe"].filter_text(caption).text == caption
    assert filters["all"].filter_text(caption).text in (caption, "A cat is asleep on the couch as of now.")


@pytest.mark.parametrize("caption,expected", [
    ("A pretty big dog lying on the grass.", "A big dog lying on the grass."),  # pretty = fairly, still removed
    ("A cat is sleeping on the couch now.", "A cat is sleeping on the couch."),  # "now" with no preposition
    ("A dog that recently ate, since it is happy.", "A dog that ate, since it is happy."),
    ("A very red apple on a table.", "A red apple on a table."),  # only pretty/real have the adjective reading
])
def test_the_new_rules_leave_ordinary_removals_alone(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


def test_hazards_for_a_stranded_preposition_read_past_removed_modifiers():
    original = "A dog asleep as of right now."
    assert any(h.startswith("preposition without its object")
               for h in hazards(original, "A dog asleep as of.", [(19, 24), (25, 28)]))
    assert hazards(original, "A dog asleep as of now.", [(19, 24)]) == []  # "right" alone may go
    assert hazards("A man is up and running.", "A man is and running.", [(9, 11)]) == \
        hazards("A man is up and running.", "A man is and running.", [(9, 11)])  # "running" is no preposition
    assert not any(h.startswith("lost conjunct") for h in hazards("A man is up and running.", "A man is and running.", [(9, 11)]))


# The round after set 3's first run (filter v11): the classes it showed, fixed in general and tested on
# sentences written for these tests (not set 3's captions).
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A dog standing still in the grass.",  # "still" after a posture verb = motionless, an adjective
    "A boy holding still for a photo.",  # "holding for a photo"
    "A woman lying still on the beach.",
    "A bench nearby the house.",  # an adverb heading a phrase with an object
    "Two cars parked nearby each other.",  # "parked each other"
    "A truck with ads on the front and back.",  # one conjunct of "front and back": "the front and."
    "A bathroom that has a black garbage back on the floor.",  # the head noun of a compound ("bag")
])
def test_grammar_guard_holds_for_the_classes_of_set_3(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,safe,all_mode", [
    ("The cat is still sleeping on the couch.", "The cat is sleeping on the couch.",
     "The cat is sleeping on the couch."),  # "still" before its verb = yet: removed
    ("A man sits still while it is still raining.", "A man sits still while it is raining.",
     "A man sits still while it is raining."),
    ("A cat sitting very still on a bed.", "A cat sitting still on a bed.", "A cat sitting still on a bed."),
    ("A woman walking slowly and carefully down the street.", "A woman walking down the street.",
     "A woman walking down the street."),  # both conjuncts go, with their "and"
    ("Kids doing tricks on skateboard outside at the park.", "Kids doing tricks on skateboard outside at the park.",
     "Kids doing tricks on skateboard at the park."),  # a noun tagged ADV stays when the adverb it hangs from goes
    ("Two dogs running together and happily playing.", "Two dogs running together and playing.",
     "Two dogs running together and happily playing."),  # not "running playing"
])
def test_the_set_3_rules_leave_ordinary_removals_alone(filters, caption, safe, all_mode):
    assert filters["safe"].filter_text(caption).text == safe
    assert filters["all"].filter_text(caption).text == all_mode


def test_dangling_puts_back_a_run_that_strands_a_coordinator_or_preposition():
    from trainer.captions.adverbs import load_spacy_model
    from trainer.captions.adverbs.coordination import dangling

    nlp = load_spacy_model()
    doc = nlp("Ads on the side and back")
    words = [t.lower_ for t in doc]
    out = [None] * len(doc)
    out[5] = "spatial"
    assert dangling(doc, words, out) == [5]
    assert dangling(doc, words, out, forced=[i == 5 for i in range(len(doc))]) == []  # the user's remove list wins
    doc = nlp("A boy on skateboard outside in the city")
    out = [None] * len(doc)
    out[3] = out[4] = "spatial"
    assert dangling(doc, [t.lower_ for t in doc], out) == [3, 4]  # "on in the city"
    out[3] = None
    assert dangling(doc, [t.lower_ for t in doc], out) == []  # "on skateboard in the city"


# The round after set 4's first run (filter v12): the classes it showed in `all` mode, fixed in general and
# tested on sentences written for these tests (not set 4's captions).
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    'A sign that says "Customers Only" on a wall.',  # all: '"Customers "'
    'A sign that reads "Slowly Down" next to a road.',  # '" Down"'
    'A shirt that says "Very Happy" on the front.',
    'A poster that says "I am really happy" on a wall.',
    "A store sign reading \u201cOpen Now\u201d above the door.",  # curly double quotes
    "A man who doesn't like the 'Really Fast' sign.",  # single quotes used as quotes, an apostrophe before
    "A box labeled \u2018Handle Very Gently\u2019 on a table.",  # curly single quotes
    'A sign that says "Parking Only" beside the dogs\' bowls.',
])
def test_quoted_text_is_never_touched(filters, mode, caption):
    """Words in quotation marks are text the picture shows (a sign, a label): no mode removes one."""
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "Two men standing back to back on a field.",  # all: "standing to back"
    "Two people sitting back to back, smiling.",
    "Cars lined up back to back on the highway.",
    "Two cats sleeping back-to-back on a blanket.",
    "Two chairs sitting side by side.",
    "Two boys standing face to face.",
    "A couple walking hand in hand on the beach.",
    "People getting off the bus one by one.",
    "Two cars parked bumper to bumper on a street.",
    "Two horses standing nose to nose in a field.",
    "A man climbing the wall little by little.",
])
def test_reduplicative_expressions_are_never_broken(filters, mode, caption):
    """"N to N", "N by N", "N in N", "N on N" are one idiom: deleting a word of it breaks it ("to back")."""
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("The dog's really big bowl and the cat's very small one.", "The dog's big bowl and the cat's small one."),
    ("The dogs' very big bowls on a floor.", "The dogs' big bowls on a floor."),  # an apostrophe is no quote
    ('A very old sign that says "Open" on a door.', 'An old sign that says "Open" on a door.'),
    ("Cars stuck bumper to bumper in traffic very slowly.", "Cars stuck bumper to bumper in traffic."),
])
def test_protection_leaves_removals_outside_it_alone(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected
    assert filters["all"].filter_text(caption).text == expected


def test_protected_spans_by_text():
    from trainer.captions.adverbs.protect import quoted_spans, reduplicated

    text = 'A "Stop" sign, a \'Slow\' sign, the dogs\' bowls and rock \'n roll don\'t count.'
    assert [text[a:b] for a, b in quoted_spans(text)] == ['"Stop"', "'Slow'"]
    assert quoted_spans("The cat's bowl and the dogs' toys.") == []
    words = "two cats back - to - back , hand in hand , one by one and to to to".split()
    assert [w for w, p in zip(words, reduplicated(words)) if p] == \
        ["back", "-", "to", "-", "back", "hand", "in", "hand", "one", "by", "one"]


# Set 5's first run (tests/data/README.md) named the classes of filter v13; tested on sentences written for these
# tests, each of which v12 got wrong.
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A woman holding a ladder, so a child can climb up.",  # "so" = "so that": a conjunction before a clause
    "A man walking a dog, so the dog can run.",
    "A plate with rice and beanly on it.",  # a noun + -ly typo ("beans"): not an adverb, "rice and on it"
    "A bowl of rice and carrotly on a table.",
    "A man walking definately on the road.",  # a misspelling: no mode removes a word on its suffix alone
    "Two men standing far apart but face to face.",  # "standing but face to face": the contrast lost its half
    "Two men standing far apart or close together.",  # "standing or close together"
    "A bird flying across a snow covered plain.",  # the noun the noun + participle compound modifies
    "An apple cutin half next to a knife.",  # the object of a preposition glued to its verb by a typo
    "A bread loaf cutin half on a board.",
])
def test_grammar_guard_holds_for_the_classes_of_set_5(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,safe,all_mode", [
    ("So the dog is sitting on a couch.", "The dog is sitting on a couch.", None),  # discourse "so" still goes
    ("A dog so happy it jumps.", None, None),  # result clause, unchanged
    ("A man sadly and slowly walking a dog.", "A man walking a dog.", None),  # both conjuncts go together
    ("A dog sitting quietly and reading.", "A dog sitting and reading.", None),  # two verbs stay coordinated
    ("A car parked outside near a tree.", None, "A car parked near a tree."),  # a place adverb after a participle
    ("Dog lethargically on soft office chair.", "Dog on soft office chair.", None),  # only an adverb: no noun head
    ("A man walking quickly on the road.", "A man walking on the road.", None),  # -ly from an adjective
])
def test_the_set_5_rules_leave_ordinary_removals_alone(filters, caption, safe, all_mode):
    assert filters["safe"].filter_text(caption).text == (safe or caption)
    assert filters["all"].filter_text(caption).text == (all_mode or safe or caption)


def test_ly_words_are_adverbs_only_from_an_adjective_or_the_table(filters):
    from trainer.captions.adverbs.words import Lexicon

    lex = Lexicon(filters["safe"].nlp)
    if not lex.adverbs:
        pytest.skip("the model carries no lemmatizer tables")
    assert lex.is_adverb("quickly") and lex.is_adverb("lethargically") and lex.is_adverb("maniacly")
    assert not lex.is_adverb("brokerly") and not lex.is_adverb("definately") and not lex.is_adverb("beanly")


def test_hazards_name_a_lost_conjunction_so():
    original = "A man holding a horse, so a boy can ride."
    assert any(h.startswith("lost conjunction so") for h in hazards(original, "A man holding a horse, a boy can ride.",
                                                                     [(23, 25)]))
    assert not any(h.startswith("lost conjunction so")
                   for h in hazards("So the dog is sitting.", "The dog is sitting.", [(0, 2)]))


# --- Set 6's classes (filter v14), on sentences written for the tests; each fails on v13 -------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "Too zebras stand in a field.",  # "too" before a noun is a typo for "two", never the degree word
    "Too cats sleeping on a soft bed.",
    "A picture taken from a long time ago.",  # "ago" closes the time phrase: "from a long time."
    "A photo taken two years ago.",
    "A man with there cell phone on a bench.",  # "there" = their: the determiner of "cell phone"
    "A man holding there phone in his hand.",
    "A dog scratching it's back on the grass.",  # "back" is the noun a possessive (typo "it's") opens
    "Two black dogs in yards across from each other.",  # the complex preposition "across from"
    "Two yellow taxis in garages across from one another.",
])
def test_set6_classes_never_break_in_any_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


def test_just_before_about_to_passes_the_hazard_net(filters):
    net = AdverbFilter("safe", model=filters["safe"].nlp)  # safety net on: "about to" stays whole
    assert net.filter_text("A cat is just about to jump off the table.").text == "A cat is about to jump off the table."


# --- Set 7's classes (filter v15), on sentences written for the tests; each fails on v14 -------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A lamp is on next to a stack of books.",  # the predicate of "is", then a complex preposition
    "The lights are off in the kitchen.",  # ... then a prepositional phrase
    "The garage door is up in front of the car.",
    "A small heater is on close to the bed.",
    "The boats are away at sea.",
    "A cat is asleep on the couch as of right now.",  # "right now" is one expression: "as of now" never
    "A man standing right behind a red car.",  # "right" + a direction word: a short way, kept with its head
    "A cat sitting right next to a dog.",
    "A dog jumping right after the ball.",
])
def test_set7_classes_never_break_in_any_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption,expected", [
    ("A dog is sleeping on the couch right now.", "A dog is sleeping on the couch."),  # time: the pair goes whole
    ("The dog ran to the door right away.", "The dog ran to the door."),  # = immediately, never "ran ... away"
])
def test_right_and_its_head_go_or_stay_together(filters, mode, caption, expected):
    assert filters[mode].filter_text(caption).text == expected


@pytest.mark.parametrize("caption,expected", [
    ("The numbers can be seen clearly on the sign.", "The numbers can be seen clearly on the sign."),
    ("The letters are clearly visible on the board.", "The letters are clearly visible on the board."),
    ("The street names are clearly marked on the map.", "The street names are clearly marked on the map."),
    ("This is clearly a dog in a park.", "This is a dog in a park."),  # the speaker's comment: stance, removed
    ("The tired dog just wants to sleep.", "The tired dog just wants to sleep."),  # just = only: focus
    ("The boy just needs a nap.", "The boy just needs a nap."),
    ("A man just finished his meal.", "A man finished his meal."),  # just = a moment ago: time, removed
    ("A dog sitting on the couch just now.", "A dog sitting on the couch."),
    ("A man standing right here in the rain.", "A man standing right here in the rain."),  # place: spatial
])
def test_clearly_just_and_right_are_read_by_role(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


def test_the_set7_rules_leave_ordinary_removals_alone(filters):
    assert filters["all"].filter_text("A very big dog is next to a cat.").text == "A big dog is next to a cat."
    assert filters["all"].filter_text("A man is outside on his bike.").text == "A man is on his bike."
    assert filters["safe"].filter_text("A lamp is very bright next to a bed.").text == "A lamp is bright next to a bed."


# --- Set 8's classes (filter v16), on sentences written for the tests; each fails on v15 --------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    # a lexicalised noun compound whose first word is adverb-like (table.NOUN_COMPOUNDS), whatever stands before it
    "Painting still life of apples and pears.",  # the genre, not "life" that goes on still
    "A closeup still life of a vase with lemons.",
    "Photographer taking still photos of a cat.",  # a still: one photograph
])
def test_a_noun_compound_keeps_its_first_word_in_every_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption,expected", [
    ("The dog is still standing in the yard.", "The dog is standing in the yard."),  # = yet, before a participle
    ("A man still holding his phone.", "A man holding his phone."),
])
def test_still_before_a_verb_is_time_as_before(filters, mode, caption, expected):
    assert filters[mode].filter_text(caption).text == expected


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    # a word split in two by a typo: the halves written together make a known word (guard.split_word)
    "A boy is over joyed with his gift.",  # "A boy is joyed"
    "The garden is over grown with weeds.",  # "overgrown", not "grown"
    "The players are out numbered on the field.",  # a regular -ed form: "outnumbered"
    "A hand holding a cup up side down.",  # "upside down" split: "up side" would be left
])
def test_a_word_split_by_a_typo_keeps_both_halves_in_every_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,safe,all_mode", [
    ("A dog is out running in the park.", "A dog is out running in the park.",
     "A dog is running in the park."),  # an -ing verb is a verb of its own: no "outrunning"
    ("A car moving back up the hill.", "A car moving back up the hill.", "A car moving up the hill."),  # "backup"
])
def test_the_split_word_rule_leaves_ordinary_removals_alone(filters, caption, safe, all_mode):
    assert filters["safe"].filter_text(caption).text == safe
    assert filters["all"].filter_text(caption).text == all_mode


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    # the particle of a phrasal verb whose sense it makes (words.PHRASAL_IDIOMS)
    "Some friends hanging around in a kitchen.",  # = loitering; "hanging in a kitchen" is being suspended
    "Two girls hanging around.",
    "Teens hanging about outside a shop.",
    "Kids horsing around in a pool.",
    "A man kicking back on a sofa.",  # = relaxing; "kicking on a sofa"
])
def test_an_idiom_particle_stays_in_every_mode(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A man walking around in a kitchen.", "A man walking in a kitchen."),  # a direction: the verb alone says it
    ("Kids running around in the yard.", "Kids running in the yard."),
    ("A man lounging around at home.", "A man lounging at home."),
])
def test_a_direction_particle_still_goes_in_all_mode(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == caption
    assert filters["all"].filter_text(caption).text == expected


@pytest.mark.parametrize("caption,expected", [
    ("A guy casually tosses a frisbee in a park.", "A guy tosses a frisbee in a park."),  # behaviour: manner
    ("Two women chatting informally in an office.", "Two women chatting in an office."),
    ("A man in a suit casually leaning on a wall.", "A man in a suit leaning on a wall."),
    ("A man dressed casually standing by a car.", "A man dressed casually standing by a car."),  # the clothes
    ("A casually dressed woman on a bench.", "A casually dressed woman on a bench."),
    ("Two men formally dressed at a party.", "Two men formally dressed at a party."),
    ("A woman very casually attired on a bench.", "A woman casually attired on a bench."),  # "very" still goes
    ("A neatly dressed man happily waving.", "A neatly dressed man waving."),  # one-reading words as before
])
def test_casually_formally_informally_are_read_by_role(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


# --- Set 9's class (filter v17), on sentences written for the tests; the "online" case fails on v16 (the tagger
# calls the other two adjectives there, so v16 kept them too: they hold the rule for other taggings) ---------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A man is online inside a busy cafe.",  # a state, not a place: "is inside a busy cafe" claims something else
    "The old laptop is offline on the desk.",
    "A small boat is adrift on the lake.",
])
def test_a_state_predicate_of_be_stays_before_a_phrase(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


def test_the_set9_rule_leaves_place_predicates_removable(filters):
    assert filters["all"].filter_text("A man is outside in a busy cafe.").text == "A man is in a busy cafe."
    assert filters["safe"].filter_text("A man is online inside a very busy cafe.").text == \
        "A man is online inside a busy cafe."


# --- Set 10's classes (filter v18), on sentences written for the tests; the hedges and the coordinators fail on
# v17, the nouns and the two verbs pass on both (what the new rules must leave alone) -------------------------------
@pytest.mark.parametrize("caption,expected", [
    ("A man kind of high in the air on a skateboard.", "A man high in the air on a skateboard."),
    ("The sky is sort of cloudy today.", "The sky is cloudy today."),
    ("A man who looks kind of sad sitting on a bench.", "A man who looks sad sitting on a bench."),
    ("A dog that is kind of sleeping on a couch.", "A dog that is sleeping on a couch."),
])
def test_kind_of_and_sort_of_go_whole_as_a_degree_hedge(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected
    assert filters["all"].filter_text(caption).text == expected


@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A plate of some kind of food on a table.",  # the noun: = type
    "A kind of old truck on a road.",
    "What kind of dog is this?",
    "A different sort of animal in a cage.",
    "Two kinds of pizza on a tray.",
])
def test_the_noun_kind_of_stays(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    # a removed first conjunct takes "and" with it when both conjuncts modify the verb
    ("A woman at her desk sits intently and happy.", "A woman at her desk sits happy."),
    ("A boy waits patiently and in the shade.", "A boy waits in the shade."),
    # a removed last conjunct of two modifiers, then a preposition or the end: "and" goes too
    ("A cake decorated neatly and lovingly for the party.", "A cake decorated neatly for the party."),
    ("A dog lies happy and contentedly on the rug.", "A dog lies happy on the rug."),
    # two verbs stay coordinated; a noun's conjunct is not a modifier's
    ("A man is sitting quietly and reading a book.", "A man is sitting and reading a book."),
])
def test_a_coordinator_goes_with_the_conjunct_it_joined(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


# --- Set 11's classes (filter v19), on sentences written for the tests -----------------------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "The dog on the couch is bigger then the cat.",  # a typo for "than" after a comparative
    "A small boy is taller then his little sister.",
    "Two boys surf in the bay while others do so nearby.",  # the pro-form of "do so"
    "The team did well in the game.",  # "do well": "did in the game" is no sentence
    "The kids are doing well at school.",
])
def test_a_bound_word_of_do_so_do_well_and_then_for_than_stays(filters, mode, caption):
    out = filters[mode].filter_text(caption).text.split()
    for word in ("then", "so", "well"):
        assert (word in out or word + "." in out) == (word in caption.split()), (caption, out)


@pytest.mark.parametrize("caption,expected", [
    ("The children did so well in the race.", "The children did well in the race."),  # the degree word still goes
    ("They do so much work in the kitchen.", "They do much work in the kitchen."),
    ("A boy rides a bike and then a car passes.", "A boy rides a bike and a car passes."),  # time "then" as before
])
def test_degree_so_and_time_then_still_go(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


@pytest.mark.parametrize("caption", [
    "A plate with just a sandwich and a pickle.",  # = only: focus, kept in safe
    "A flooded road with just the roof of a car visible.",
])
def test_just_before_a_noun_phrase_is_focus(filters, caption):
    assert filters["safe"].filter_text(caption).text == caption
    assert "just" not in filters["all"].filter_text(caption).text.lower()
    assert filters["safe"].filter_text("A man has just finished a run.").text == "A man has finished a run."


def test_simultaneously_is_kept_with_together(filters):
    caption = "Three kids simultaneously jump off a dock together."  # = together: a picture shows it
    assert filters["safe"].filter_text(caption).text == caption
    assert filters["all"].filter_text(caption).text == "Three kids jump off a dock."


# --- Set 10's label text and set 12's class (filter v21), on sentences written for the tests; the "grown ... tag"
# cases and "written on inside" fail on v20, the others and the removals beside them pass on both -----------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A box of apples with a locally grown produce label on it.",  # the label's text, unquoted
    "A bag of peppers with an organically grown tag.",
])
def test_an_adverb_participle_pair_before_a_label_noun_is_its_text(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption", [
    "A pizza box with a message written on inside.",  # = on the inside: the noun "on" takes
    "A sticker stuck to outside.",
])
def test_inside_outside_after_a_preposition_at_the_end_is_its_object(filters, caption):
    assert filters["all"].filter_text(caption).text == caption


def test_the_v21_rules_leave_ordinary_removals_alone(filters):
    assert filters["all"].filter_text("A man standing outside.").text == "A man standing."
    assert filters["all"].filter_text("A beautifully decorated cake on a table.").text == \
        "A decorated cake on a table."
    assert filters["safe"].filter_text("A very old sign on a wall.").text == "An old sign on a wall."


# --- Set 13's classes (filter v22), on sentences written for the tests; the direction and the participle cases
# fail on v21, "seen from above" and "facing each other outside" pass on both -------------------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "A cat on a bench facing forward.",  # "facing." needs what it faces
    "A bus heading out.",
    "A man seen from above on the grass.",  # "above" is the object of "from"
])
def test_a_direction_after_facing_or_heading_stays_at_a_clause_end(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A plate of already sliced apples on a table.", "A plate of sliced apples on a table."),
    ("A bowl of slightly bruised pears.", "A bowl of bruised pears."),  # the participle's degree, not "of"'s object
])
def test_an_adverb_of_an_attributive_participle_after_a_preposition_goes(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected
    assert filters["all"].filter_text("Two people facing each other outside.").text == "Two people facing each other."


# --- Set 14's classes (filter v23), on sentences written for the tests; the first case of each test fails on
# v22, the others pass on both (what the new readings must leave alone) -----------------------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
def test_around_a_number_after_a_verb_of_standing_is_a_preposition(filters, mode):
    for caption in ("A few kids gather around three small dogs.", "Women standing around four tall giraffes."):
        assert filters[mode].filter_text(caption).text == caption
    assert filters["all"].filter_text("A fish that weighs around three pounds.").text == \
        "A fish that weighs three pounds."  # an approximator after a verb that takes the number as its object


@pytest.mark.parametrize("caption,expected", [
    ("A girl with pretty painted nails on a couch.", "A girl with pretty painted nails on a couch."),  # attractive
    ("A pretty big dog on a couch.", "A big dog on a couch."),  # = fairly
])
def test_pretty_before_a_participle_of_a_noun_is_the_adjective(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


@pytest.mark.parametrize("caption,expected", [
    ("An old truck with a badly dented door.", "An old truck with a dented door."),  # = severely: degree
    ("A car badly parked on a street.", "A car badly parked on a street."),  # how it looks parked: appearance
    ("A tray of cookies just short of a dozen.", "A tray of cookies just short of a dozen."),  # = almost: focus
])
def test_badly_and_just_are_read_by_role(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected


# --- Set 15's class (filter v24), on sentences written for the tests; the typo case fails on v23 ----------------
@pytest.mark.parametrize("mode", ["safe", "all"])
def test_a_preposition_before_and_typed_for_an_keeps_its_object(filters, mode):
    caption = "A bus is sitting along tracks under and overpass."  # "and" = "an": "tracks and overpass" is broken
    assert filters[mode].filter_text(caption).text == caption


def test_the_direction_rule_reads_verbs_only(filters):
    assert filters["all"].filter_text("Two elephants pressing their heads together.").text == \
        "Two elephants pressing their heads."  # "heads" is the noun: "together" goes in all mode
    assert filters["all"].filter_text("A dog running around and a cat sleeping.").text == \
        "A dog running and a cat sleeping."


# --- Set 16's classes (filter v25), on sentences written for the tests; the negated "so"/"that" and "smiles
# brightly" fail on v24, the others pass on both ---------------------------------------------------------------
@pytest.mark.parametrize("mode", ["safe", "all"])
@pytest.mark.parametrize("caption", [
    "The old bike never looked so good.",  # "never looked good" says the opposite
    "A dog that is not that big.",
])
def test_a_degree_word_under_a_negation_stays(filters, mode, caption):
    assert filters[mode].filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A boy smiles brightly at the camera.", "A boy smiles at the camera."),  # how he smiles, as "warmly": manner
    ("A brightly colored kite in the sky.", "A brightly colored kite in the sky."),  # how it looks: appearance
    ("The pizza is not so hot, but so tasty.", "The pizza is not so hot, but tasty."),  # past the negation
    ("A dog that is not very loud.", "A dog that is not loud."),  # a hedge under a negation still goes
])
def test_brightly_is_read_by_role_and_the_negation_ends_at_its_clause(filters, caption, expected):
    assert filters["safe"].filter_text(caption).text == expected
