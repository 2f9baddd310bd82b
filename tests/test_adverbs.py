"""The adverb filter on hand-picked captions: every hazard, each mode, offsets, cache, caption sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from trainer.captions.adverbs import (
    AdverbFilter, FilterCache, SpacyModelMissing, article_for, default_cache_dir, filter_adverbs,
    load_spacy_model,
)
from trainer.captions.captionset import CaptionRecord, CaptionSet


@pytest.fixture(scope="module")
def safe(nlp):
    return AdverbFilter("safe", model=nlp)


@pytest.fixture(scope="module")
def all_(nlp):
    return AdverbFilter("all", model=nlp)


def removed(result) -> list[str]:
    return [s.text for s in result.removed]


@pytest.mark.parametrize("caption", [
    "A man sitting in the grass next to a toy.",
    "A woman standing close to the oven.",
    "Water up to his knees.",
    "A dog running away from the beach.",
    "A cat jumping out of a box.",
    "A bowl of apples as well as oranges.",
    "Close up of a pizza with cheese.",
    "A red fire hydrant on the sidewalk.",
    "A kitten sitting on a skateboard.",
    "A person sitting down on a bench.",
    "The place where people wait for the bus.",
    "A man who is not happy.",
    "A dog that never sleeps.",
    "Here is a pizza on the table.",
    "Some plants that are outside.",
    "A partially eaten sandwich.",
    "A green circle seen from above on the grass.",
    # Tagged ADV but a different part of speech by its position:
    "Best to eat it warm.",  # a sentence-opening superlative adjective
    "The dog ran once I threw the ball.",  # a conjunction before a subject pronoun
    "Please forward a copy of the menu.",  # the imperative verb after "please"
    "Taken on or about May 5.",  # a preposition heading a name
    "Men wearing straight - legged jeans.",  # first half of a hyphenated compound modifier
])
def test_safe_keeps_what_grammar_and_meaning_need(safe, caption):
    r = safe.filter_text(caption)
    assert r.text == caption and r.removed == ()


@pytest.mark.parametrize("caption,lost", [
    ("A dimly lit bathroom.", "dimly"),
    ("A plane flying overhead.", "overhead"),
    ("Two birds standing together on a branch.", "together"),
])
def test_all_mode_removes_visual_adverbs_too(all_, caption, lost):
    assert lost in removed(all_.filter_text(caption))


@pytest.mark.parametrize("caption", [
    "A man sitting in the grass next to a toy.",
    "Close up of a pizza with cheese.",
    "Some plants that are outside.",
    "A red fire hydrant on the sidewalk.",
    "Men standing up to their knees in water.",
    "A cat sitting next too a shelf.",
])
def test_all_mode_keeps_what_grammar_needs(all_, caption):
    assert all_.filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected", [
    ("A sooooo cute puppy on a bed.", "A cute puppy on a bed."),  # lengthened degree word, tagged PROPN/NN
    ("Over ten men pushing a charter bus.", "Ten men pushing a charter bus."),  # approximator tagged IN
    ("A horse jumps over two poles.", "A horse jumps over two poles."),  # ... but a preposition stays
    ("The information contained herein is public.", "The information contained is public."),  # only an adverb, tagged NN
])
def test_all_mode_removes_adverbs_the_tagger_mislabels(all_, caption, expected):
    assert all_.filter_text(caption).text == expected


@pytest.mark.parametrize("caption,expected", [
    ("Two dogs so far, and a cat.", "Two dogs, and a cat."),  # "so far" = until now: time, both words go
    ("The mountains are so far away.", "The mountains are far away."),  # degree "so" + spatial "far"
    ("With the demand so high, the question arises.", "With the demand high, the question arises."),
    ("A cake so big it fills the table.", "A cake so big it fills the table."),  # result clause needs "so"
    ("The dog is so big that it fills the bed.", "The dog is so big that it fills the bed."),
])
def test_so_far_and_result_clauses(safe, caption, expected):
    assert safe.filter_text(caption).text == expected


def test_negations_stay_in_every_mode(nlp):
    for mode in ("all", "safe", "intensifiers"):
        r = AdverbFilter(mode, model=nlp).filter_text("A dog that never barks and is not very loud.")
        assert "never" in r.text and "not" in r.text and "very" not in r.text


@pytest.mark.parametrize("caption,expected", [
    ("A very old man happily walking his dog.", "An old man walking his dog."),
    ("An even smaller fridge in a kitchen.", "A smaller fridge in a kitchen."),
    ("Very large elephants in a field.", "Large elephants in a field."),
    ("Clearly, a dog is running quickly and happily.", "A dog is running."),
    ("Two men, very happily, ride bikes.", "Two men ride bikes."),
    ("A cat sleeping peacefully.", "A cat sleeping."),
    ("A man who isn\u2019t really happy.", "A man who isn\u2019t happy."),
    # Degree adverbs the tagger misses: lengthened spellings, and degree words tagged ADJ.
    ("A sooooo cute puppy on a bed.", "A cute puppy on a bed."),
    ("A veryyy big dog.", "A big dog."),
    ("Quite cold weather at the beach.", "Cold weather at the beach."),
])
def test_text_reads_naturally_after_removal(safe, caption, expected):
    r = safe.filter_text(caption)
    assert r.text == expected
    assert "  " not in r.text and " ." not in r.text and " ," not in r.text


def test_removed_offsets_point_into_the_original(safe):
    caption = "A very small dog quietly sitting next to a really big cat."
    r = safe.filter_text(caption)
    assert removed(r) == ["very", "quietly", "really"]
    for s in r.removed:
        assert caption[s.start:s.end] == s.text
    assert r.original == caption


def test_curly_apostrophes_are_normalised_for_tagging(safe):
    straight = safe.filter_text("A dog that isn't really barking.")
    curly = safe.filter_text("A dog that isn\u2019t really barking.")
    assert removed(straight) == removed(curly) == ["really"]


def test_intensifiers_mode_removes_only_degree_stance_manner(nlp):
    f = AdverbFilter("intensifiers", model=nlp)
    r = f.filter_text("A very happy dog apparently sitting outside now, eating happily.")
    assert {(s.text, s.category) for s in r.removed} == {("very", "degree"), ("apparently", "stance"), ("happily", "manner")}
    assert "outside" in r.text and "now" in r.text


def test_keep_and_remove_lists(nlp):
    caption = "A very tall giraffe standing together with zebras outside."
    base = AdverbFilter("safe", model=nlp).filter_text(caption)
    assert removed(base) == ["very"]
    spatial = AdverbFilter("safe", remove_categories=["spatial"], model=nlp).filter_text(caption)
    assert "outside" in removed(spatial)
    kept = AdverbFilter("safe", keep=["very"], model=nlp).filter_text(caption)
    assert kept.text == caption
    assert AdverbFilter("safe", keep_categories=["degree"], model=nlp).filter_text(caption).text == caption
    with pytest.raises(ValueError, match="unknown adverb category"):
        AdverbFilter(remove_categories=["colour"])
    forced = AdverbFilter("safe", remove=["together with"], model=nlp).filter_text(caption)
    assert "together" not in forced.text and "with" not in forced.text
    with pytest.raises(ValueError, match="both in keep and remove"):
        AdverbFilter(keep=["very"], remove=["very"])
    with pytest.raises(ValueError, match="unknown word group"):
        AdverbFilter(keep=["@nope"])
    with pytest.raises(ValueError, match="mode"):
        AdverbFilter("everything")


@pytest.mark.parametrize("word,art", [
    ("apple", "an"), ("dog", "a"), ("hour", "an"), ("unicorn", "a"), ("umbrella", "an"),
    ("European", "a"), ("one", "a"), ("FBI", "an"), ("UFO", "a"), ("8", "an"), ("unusual", "an"),
])
def test_article_for(word, art):
    assert article_for(word) == art


def test_filter_texts_matches_filter_text_and_caches(safe, tmp_path, monkeypatch):
    caps = ["A very big dog.", "A cat.", "A very big dog.", "Two birds flying happily together."]
    first = safe.filter_texts(caps, workers=1, cache_dir=tmp_path)
    assert first == [safe.filter_text(c) for c in caps]
    assert (tmp_path / "adverbs.sqlite").is_file()

    def no_tagging(*a, **kw):
        raise AssertionError("a cached caption was tagged again")

    monkeypatch.setattr(safe, "_run", no_tagging)
    assert safe.filter_texts(caps, workers=1, cache_dir=tmp_path) == first
    # another mode is another cache key
    other = AdverbFilter("intensifiers", model=safe.nlp)
    monkeypatch.setattr(other, "_run", no_tagging)
    with pytest.raises(AssertionError, match="tagged again"):
        other.filter_texts(caps, cache_dir=tmp_path)


def test_cache_location_respects_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "sd_adverb_lora" / "adverbs"
    c = FilterCache(tmp_path / "c", "fp")
    c.put_many([("x", ("y", ((1, 2, "degree"),), (("up", "spatial"),)))])
    assert FilterCache(tmp_path / "c", "fp").get_many(["x", "z"]) == {"x": ("y", ((1, 2, "degree"),), (("up", "spatial"),))}
    assert FilterCache(tmp_path / "c", "other").get_many(["x"]) == {}


def test_filter_adverbs_on_a_caption_set(nlp, tmp_path):
    cs = CaptionSet((CaptionRecord("a.jpg", "A very big dog.", source_id="coco:1"),
                     CaptionRecord("b.jpg", "A cat.", source_id="coco:2")), {"loader": "coco"})
    out = filter_adverbs(cs, mode="safe", cache_dir=False, model=nlp)
    assert [r.caption for r in out] == ["A big dog.", "A cat."]
    assert out.records[0].original == "A very big dog." and out.records[0].removed[0].text == "very"
    assert out.records[0].source_id == "coco:1"
    prov = out.provenance["adverb_filter"]
    assert prov["mode"] == "safe" and prov["changed"] == 1 and prov["spacy_version"] and prov["model_version"]
    assert out.provenance["loader"] == "coco"
    # re-filtering starts from the original caption
    again = filter_adverbs(out, mode="all", cache_dir=False, model=nlp)
    assert again.records[0].original == "A very big dog."
    loaded = CaptionSet.load(out.save(tmp_path / "s.jsonl"))
    assert loaded.records == out.records


def test_missing_model_names_install_py():
    with pytest.raises(SpacyModelMissing, match="python install.py"):
        load_spacy_model("en_core_web_nonexistent")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_give_the_same_results(safe, monkeypatch, method):
    """Helpers forked with the loaded model or spawned (loading it): same results, in order."""
    import threading

    from trainer.captions.adverbs import workers

    if method == "fork" and (not sys.platform.startswith("linux") or threading.active_count() > 1):
        pytest.skip("fork is used only on Linux in a single-threaded process")
    monkeypatch.setattr(workers, "_helper_start_method", lambda: method)
    caps = [f"A very small dog number {i} sitting quietly next to a fire hydrant." for i in range(1200)]
    assert safe._run(caps, workers=2, progress=False) == safe._filter_raw(caps)


def test_cli_line_in_line_out(tmp_path, capsys):
    from trainer.__main__ import main

    lines = ["A very big dog.", "", "Close up of a pizza.", "   ", "Happily, a cat sleeps."]
    src = tmp_path / "caps.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["adverbs", str(src), "--no-cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["A big dog.", "", "Close up of a pizza.", "   ", "A cat sleeps."]
    assert main(["adverbs", str(src), "--no-cache", "--json", "--mode", "all"]) == 0
    objs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(objs) == len(lines) and [o["original"] for o in objs] == lines
    assert objs[2]["text"] == "Close up of a pizza."  # even `all` keeps a fixed phrase whole
    assert objs[0]["removed"] == [{"text": "very", "start": 2, "end": 6, "category": "degree"}]


def test_cli_category_switches(monkeypatch, capsys):
    import io

    from trainer.__main__ import main

    monkeypatch.setattr("sys.stdin", io.StringIO("Two very happy dogs sitting together outside.\n"))
    assert main(["adverbs", "--no-cache", "--json", "--remove-category", "spatial", "--keep-category", "manner"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {(x["text"], x["category"]) for x in obj["removed"]} == {("very", "degree"), ("together", "spatial"), ("outside", "spatial")}
    assert obj["text"] == "Two happy dogs sitting."


def test_cli_reads_stdin(monkeypatch, capsys):
    import io

    from trainer.__main__ import main

    monkeypatch.setattr("sys.stdin", io.StringIO("A really red apple.\nAn extremely old car.\n"))
    assert main(["adverbs", "--no-cache", "--keep", "really"]) == 0
    assert capsys.readouterr().out.splitlines() == ["A really red apple.", "An old car."]


def test_tag_to_pos_matches_the_attribute_ruler(nlp):
    """The filter's shortcut for the attribute ruler gives the same coarse tags, word exceptions included."""
    f = AdverbFilter("safe", model=nlp)
    f.nlp
    assert f._tag_to_pos is not None
    texts = ["The dog that is sleeping once in a while.", "Something is so big that nobody sees it.",
             "A cat  with two spaces.", "Here is a pizza; where is the oven?", "He can't do it 'cause it's late."]
    fast = list(f._tagged_with_pos(nlp.pipe(texts, disable=["attribute_ruler"])))
    for got, ref in zip(fast, nlp.pipe(texts, disable=["parser"])):
        assert [t.pos_ for t in got] == [t.pos_ for t in ref]
    assert "PRON" in [t.pos_ for t in fast[0]] and "SCONJ" in [t.pos_ for t in fast[1]]  # word exceptions


# --- the guarantees: visual adverbs stay, nothing is damaged ---------------------------
DATA = __import__("pathlib").Path(__file__).parent / "data"
# the shared data sits beside the checkout (conftest.SHARED_DATA); /work/shared when run from a copy
COCO_VAL = next((p / "coco" / "captions_val2017.json" for p in (DATA.parents[2] / "shared" / "data",
                 __import__("pathlib").Path("/work/shared/data")) if (p / "coco" / "captions_val2017.json").is_file()),
                DATA / "missing")


@pytest.mark.parametrize("caption", [
    "A dimly lit modern bathroom.", "a well made cooker", "two elephants with their heads close together",
    "people facing away, and a dog", "a drink near by", "THIS IS A WELL LIT AND CLEAN SUBWAY STATION",
    "a cat sitting next too a shelf", "The young is enjoying his cake so much its all over him.",
    "in dimly lit area", "A brightly colored bus parked outside.", "Two zebras standing side by side.",
    "A computer laying upside down.", "A plane flying overhead.", "A boat on a still lake.",
])
def test_safe_keeps_what_describes_the_picture(safe, caption):
    assert safe.filter_text(caption).text == caption


@pytest.mark.parametrize("caption,expected,category", [
    ("A very old man.", "An old man.", "degree"),
    ("A cat sleeping peacefully.", "A cat sleeping.", "manner"),
    ("The dog just got the frisbee.", "The dog got the frisbee.", "time"),
    ("A man apparently eating.", "A man eating.", "stance"),
    ("A VERY OLD MAN ON A BENCH", "AN OLD MAN ON A BENCH", "degree"),
])
def test_safe_removes_what_says_nothing_about_the_picture(safe, caption, expected, category):
    r = safe.filter_text(caption)
    assert r.text == expected and [s.category for s in r.removed] == [category]


def test_all_caps_article_is_spelled_not_read_as_acronym():
    assert article_for("OLD", all_caps=True) == "an" and article_for("LIT", all_caps=True) == "a"
    assert article_for("FBI") == "an"


@pytest.mark.parametrize("original,damaged,name", [
    ("A very old man.", "A old man.", "a/an disagreement"),
    ("A man sitting next to a toy.", "A man sitting to a toy.", "stranded preposition"),
    ("A dog, happily, runs.", "A dog, , runs.", "doubled punctuation"),
    ("There's a dog.", "'s a dog.", "broken contraction"),
])
def test_hazards_finds_each_kind_of_damage(original, damaged, name):
    """The checker itself: each kind of damage the naive filter did is reported, an intact caption is not."""
    from trainer.captions.hazards import hazards

    start = original.find(original.split()[0 if name != "stranded preposition" else 3])
    removed = [(start, start + len(original.split()[3]))] if name == "stranded preposition" else []
    assert any(h.startswith(name) for h in hazards(original, damaged, removed))
    assert hazards(original, original) == []


def test_gold_set(safe):
    """>= 98 % of safe-mode outputs equal the reading-labelled gold (tests/data/README.md)."""
    rows = [json.loads(line) for line in (DATA / "adverbs_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 400
    results = safe.filter_texts([r["caption"] for r in rows], workers=1, cache_dir=False)
    wrong = [(r["caption"], res.text, r["gold"]) for r, res in zip(rows, results)
             if res.text != r["gold"] and res.text not in r.get("also_acceptable", ())]
    assert 1 - len(wrong) / len(rows) >= 0.98, wrong


@pytest.mark.skipif(not COCO_VAL.is_file(), reason="COCO val2017 captions not available")
@pytest.mark.parametrize("mode", ["safe", "all"])
def test_no_hazards_on_a_coco_sample(nlp, mode):
    """A random sample of real captions: no removal leaves a/an disagreement, a stranded preposition,
    doubled punctuation or a broken contraction -- with the safety net off, so the rules alone must do it."""
    import random

    from trainer.captions.hazards import hazards

    caps = [a["caption"] for a in json.loads(COCO_VAL.read_text(encoding="utf-8"))["annotations"]]
    sample = random.Random(7).sample(caps, 400)
    f = AdverbFilter(mode, model=nlp)
    f.check_hazards = False
    results = f.filter_texts(sample, workers=1, cache_dir=False)
    assert sum(r.changed for r in results) > 5
    bad = [(r.original, r.text, h) for r in results
           if (h := hazards(r.original, r.text, [(s.start, s.end) for s in r.removed]))]
    assert bad == []


def test_parsing_only_where_needed_changes_no_output(nlp, monkeypatch):
    """Skipping the parser for captions decided by the word alone gives the same output as parsing all."""
    rows = [json.loads(line) for line in (DATA / "adverbs_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    caps = [r["caption"] for r in rows]
    for mode in ("safe", "all"):
        f = AdverbFilter(mode, model=nlp)
        on_demand = f._filter_raw(caps)
        monkeypatch.setattr(f, "_needs_parse", lambda doc: True)
        assert f._filter_raw(caps) == on_demand


def test_a_broken_spacy_is_an_error_not_a_missing_model(tmp_path):
    """spaCy that is installed but fails to import (a dependency gone) must not read as 'not installed' and skip."""
    (tmp_path / "spacy").mkdir()
    (tmp_path / "spacy" / "__init__.py").write_text("import click_that_is_not_there\n")
    code = ("from trainer.captions.adverbs import load_spacy_model, SpacyModelMissing\n"
            "try:\n    load_spacy_model()\nexcept SpacyModelMissing as e:\n    print('MISSING', e)\n"
            "except ImportError as e:\n    print('BROKEN', e)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True).stdout
    assert out.startswith("BROKEN spaCy is installed but does not import"), out
    assert "click_that_is_not_there" in out


def test_quality_bench_grammar_bound_definition():
    """bench/adverbs_quality.py's `recall-g` leaves out exactly the gold adverbs whose deletion alone breaks
    the sentence by the gold tree: fixed multiword prepositions, predicates of "be", objects of prepositions,
    the first "as" of "as ... as"; a free adverb ("quickly") and an adverb group ("far away") stay counted."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("adverbs_quality", REPO_ROOT / "bench" / "adverbs_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def tree(*rows):  # (form, UPOS, head (1-based, 0 = root), deprel)
        return [(f, u, "RB" if u == "ADV" else "_", h - 1, d) for f, u, h, d in rows]

    cases = {
        "next to": (tree(("We", "PRON", 2, "nsubj"), ("stay", "VERB", 0, "root"), ("next", "ADV", 2, "advmod"),
                         ("to", "ADP", 5, "case"), ("it", "PRON", 3, "obl")), [None, None, "fixed", "fixed", None]),
        "predicate": (tree(("you", "PRON", 3, "nsubj"), ("'re", "AUX", 3, "cop"), ("in", "ADV", 0, "root")),
                      [None, None, "predicate"]),
        "prep-object": (tree(("buy", "VERB", 0, "root"), ("from", "ADP", 3, "case"), ("here", "ADV", 1, "obl")),
                        [None, None, "prep-object"]),
        "as-as": (tree(("as", "ADV", 2, "advmod"), ("big", "ADJ", 0, "root"), ("as", "ADP", 4, "case"),
                       ("rats", "NOUN", 2, "obl")), ["as-as", None, None, None]),
        "free": (tree(("runs", "VERB", 0, "root"), ("quickly", "ADV", 1, "advmod"), ("far", "ADV", 4, "advmod"),
                      ("away", "ADV", 1, "advmod")), [None, None, None, None]),
    }
    for name, (sent, expected) in cases.items():
        assert bench.grammar_bound(sent) == expected, name


@pytest.mark.parametrize("line, settings, expected", [
    ("Two dogs sit together outside, very still.", {"keep_categories": ["degree"]}, "Two dogs sit together outside."),
    ("a man almost always smiling at the camera", {}, "a man smiling at the camera"),
    ("A dog runs very very slowly.", {"keep_categories": ["degree"]}, "A dog runs."),
])
def test_a_modifier_goes_with_the_adverb_it_modifies(line, settings, expected):
    """A kept degree/focus word is not left stranded when its head adverb is removed (category switches included)."""
    assert AdverbFilter("safe", **settings).filter_text(line).text == expected
