"""The adverb filter: tags captions, decides per token (decide.py), rebuilds the text (repair.py).

Throughput: a tagger-only pipeline, batched ``nlp.pipe``, the parser run only on the captions that have an
adverb to decide about, shards over worker processes that return plain strings (workers.py), and an on-disk
cache (cache.py).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..captionset import CaptionSet, RemovedSpan, replace
from .. import hazards as hazard_checks  # a module: hazards.py imports this package's word classes
from . import workers as _workers
from .cache import FilterCache, default_cache_dir
from .decide import decide
from .model import TagToPos, load_spacy_model, model_info
from .readings import NOUN_TAGS
from .repair import normalise, rebuild
from .table import CATEGORIES, COUNT_FOCUS, DEGREE_HEDGES, INTENSIFIERS_REMOVED, ROLE_READINGS, SAFE_REMOVED, WORD_CATEGORY, words_in
from .words import DEGREE_MODIFIERS, NEGATIONS, WH_ADVERBS, Lexicon, expand_words

MODES = ("safe", "all", "intensifiers")
FILTER_VERSION = "25"  # part of the cache key: bump when a rule changes its output
BATCH_SIZE = 256  # nlp.pipe batch (see bench/adverbs_throughput.py --batch-sizes)
# What `degree_modifier_missed` and `hedge` can fire on, as a cheap pre-check on the caption text.
_HIDDEN_DEGREE = re.compile(r"(\w)\1{2,}|\b(?:" + "|".join(sorted(DEGREE_MODIFIERS)) + r")\b"
                            r"|\b(?:" + "|".join(sorted(DEGREE_HEDGES)) + r") of\b", re.IGNORECASE)
# Adverbs decided by the word alone (no parse needed), unless a role reading or the guard needs the tree.
_WORD_DECIDED = words_in("degree") | words_in("spatial") | words_in("focus") | NEGATIONS | WH_ADVERBS
# Words whose category the parse can change without a role reading: "even" (degree before a comparative).
_PARSE_FOR_CATEGORY = frozenset({"even"})
_ROLE_WORDS = frozenset({"so", "much", "many", "just", "well", "long", "oddly", "strangely", "enough", "too", "pretty",
                         "up", "down", "out", "off", "in", "on", "over", "away", "back", "even"})


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
        self._lex = None  # the WordNet word classes (words.Lexicon), built with the model
        self._adv_id = None
        self._tag_to_pos = None
        self._trigger_ids = frozenset()
        self._parser = None

    # --- model -------------------------------------------------------------------------------
    @property
    def nlp(self):
        if self._nlp is None:
            self._nlp = load_spacy_model(self._model_name)
        if self._lex is None:
            from spacy.symbols import ADV

            self._adv_id = ADV
            self._lex = Lexicon(self._nlp)
            # Lower-case ids of the words that can make a caption without an ADV tag need the rules.
            strings = self._nlp.vocab.strings
            self._trigger_ids = frozenset(strings.add(w) for w in self._lex.only_adverbs
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
        if any(t.tag_ in NOUN_TAGS and t.lower_ in self._lex.only_adverbs for t in doc):
            return True
        return self.mode == "all" and any(t.lower_ in COUNT_FOCUS and t.tag_ == "IN" and t.i + 1 < len(doc)
                                          and doc[t.i + 1].like_num for t in doc)

    def _needs_parse(self, doc) -> bool:
        """Whether a decision about this doc reads the parse. Degree words ("very", half of all removals),
        spatial and focus words, negations and wh-words are decided by the word alone, so a caption
        whose only adverbs are those (or "next to" ...) skips the parser, which costs more than the tagger.
        The parse is read for role readings (table.ROLE_READINGS), particles after a noun, an adjective
        reading before a noun ("a pretty girl") and anything else."""
        adv = self._adv_id
        adjectives = self._lex.adjectives
        for i, t in enumerate(doc):
            if self.mode == "all" and t.tag_ == "IN" and t.lower_ in COUNT_FOCUS:
                return True  # approximator or preposition: the parse tells ("around 20 people", "over two poles")
            if t.pos != adv:
                continue
            w = t.lower_
            if self.mode != "all" and w not in ROLE_READINGS and w not in _PARSE_FOR_CATEGORY \
                    and WORD_CATEGORY.get(w, "degree") not in self.removed_categories:
                continue  # kept by its category whatever the parse says ("up", "outside", "also" in safe)
            if w in _ROLE_WORDS or w not in _WORD_DECIDED:
                return True
            if w in adjectives and i + 1 < len(doc) and doc[i + 1].tag_ in ("NN", "NNS"):
                return True
        return False

    def _filter_doc(self, doc, original: str, needs_rules: bool | None = None) -> tuple:
        """(new text, removed (start, end, category), kept visual (word, category)) for one tagged Doc."""
        if not (self._needs_rules(doc, original) if needs_rules is None else needs_rules):
            return original, (), ()
        words = [t.lower_ for t in doc]
        decision, kept = decide(doc, words, self._lex, self.mode == "all", self.removed_categories,
                                self._keep_phrases, self._remove_phrases)
        new, spans = rebuild(doc, original, decision)
        if spans and self.check_hazards and hazard_checks.hazards(original, new, [(a, b) for a, b, _ in spans]):
            self.fallbacks += 1  # never damage a caption: leave it as it was
            return original, (), tuple(kept)
        return new, spans, tuple(kept)

    def _filter_raw(self, texts: list[str], batch_size: int = BATCH_SIZE) -> list[tuple]:
        """(new text, removed offsets, kept) per text: plain tuples, cheap to send between processes."""
        nlp = self.nlp
        normalised = (normalise(t) for t in texts)
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
        """Filter `texts` in this process and `workers - 1` helpers (see workers.run)."""
        return _workers.run(self, texts, workers, progress)


def _result(original: str, text: str, spans, kept=()) -> FilterResult:
    return FilterResult(text, original, tuple(RemovedSpan(original[s:e], s, e, c) for s, e, c in spans),
                        tuple(tuple(k) for k in kept))


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
