"""Mode `decorrelate`: make the adverbs safe mode would remove independent of the image, instead of removing them.

Why: the text encoder is frozen, so a caption without the adverb gives the UNet no gradient about it — removal
stops teaching a bias the base model learnt but does not unteach it. A caption where the adverb appears
independently of the picture teaches the UNet that the word carries no information (bench/effect_experiment.py
measures both).

What happens to a caption (each of its K variants is drawn on its own):
- presence: the variant's number of adverbs is drawn from the dataset's own distribution (share of captions with
  none, one, two; or a set `rate` of captions with any), whatever the caption had — so whether an adverb appears
  says nothing about the picture. Drawn 0: the variant is safe mode's output (the adverbs removed).
- identity: if the draw equals the caption's own number and every one of its adverbs stands in a slot we can
  refill, each is replaced in place by a word drawn (by frequency) from the pool of the same category *and slot*:
  degree words before an adjective/adverb, manner/time/stance words before a verb, after a verb, or at the
  caption's start or end. A word is only drawn for a slot it was seen in (or, for a given word list, a slot its
  category always allows), so the slot stays grammatical.
- otherwise the adverbs are inserted into safe mode's output at such slots (a degree word before a plain
  adjective, a manner/time/stance word before a verb or a time word at the end), two of one category joined by
  "and" when the caption has a single slot for them.
Articles are re-agreed ("a very old" -> "an extremely old"), capitals follow the caption, and every variant is
checked with `hazards.hazards`; one that fails becomes safe mode's output (counted as a fallback: 0 on COCO val2017).
Visual adverbs (place, arrangement, appearance) and everything else safe mode keeps are untouched.

The pool defaults to the removable adverbs found in the dataset's own captions, with their frequencies: the words
a model could have learnt a bias for. Deterministic for a seed: the draws of record i come from
`random.Random` seeded with (seed, i, its original caption).
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, replace

from .adverbs.repair import is_all_caps
from .articles import article_for
from .captionset import CaptionSet
from .hazards import hazards

MODE = "decorrelate"
DECORRELATE_VERSION = "1"
CATEGORIES = ("degree", "manner", "time", "stance")  # what safe mode removes: what says nothing about the picture
DEFAULT_VARIANTS = 4
MAX_INSERTED = 2  # more adverbs than this in one caption are rare in real captions and read as a list
# Degree words that can premodify any gradable adjective, attributive or predicative ("a very old car", "is
# fairly clean"). Others ("so", "too", "that", "as", "all", "enough", "much") have syntax of their own ("a so
# old car" is wrong): they are never drawn, and a caption holding one gets its adverbs by insertion instead.
PREMODIFIERS = frozenset({
    "very", "really", "extremely", "slightly", "fairly", "rather", "pretty", "incredibly", "somewhat", "super",
    "particularly", "especially", "exceptionally", "remarkably", "relatively", "reasonably", "unusually",
    "truly", "quite",
})
# Adjectives a degree word cannot premodify (not gradable, or determiner-like: "a very other dog").
_NOT_GRADABLE = frozenset({
    "other", "such", "only", "own", "several", "each", "both", "last", "next", "first", "second", "third",
    "certain", "same", "main", "whole", "entire", "various", "numerous", "many", "few", "much", "more", "most",
    "less", "least", "front", "back", "top", "bottom", "left", "right", "double", "single", "near", "close",
    "due", "able", "unable", "former", "latter", "upper", "lower", "inner", "outer", "half", "sure", "else",
    "total", "middle", "further", "previous", "individual", "particular", "elderly", "couple", "lone", "sole",
})
# Words before an adjective after which a degree word may stand ("a", "is", "two", "with", "and").
_DEGREE_AFTER_POS = frozenset({"DET", "AUX", "NUM", "ADP", "CCONJ"})
_VERB_TAGS = frozenset({"VBG", "VBZ", "VBD", "VBP", "VBN"})
# A verb heading a clause (not a participle used as an adjective: "a tree lined street", "a sleeping cat").
_CLAUSE_VERB_DEPS = frozenset({"ROOT", "acl", "relcl", "conj", "advcl", "ccomp", "xcomp"})
# Words that read well closing a clause whatever the verb ("... on the beach now"); besides these only -ly adverbs
# ("... walking across the street slowly") fill the end slot. "ago" needs a time before it, "else" a pronoun.
_END_WORDS = frozenset({"now", "today", "again", "later", "tonight", "yesterday", "twice"})
_NEVER_DRAWN = frozenset({"else", "ago", "so", "too", "as", "that", "all", "enough", "much", "even", "only"})
# Slots a word list's words may fill by their category alone (no observation in the data needed).
_LIST_SLOTS = {"degree": "pre-adj", "manner": "pre-verb", "time": "pre-verb", "stance": "pre-verb"}
_INSERTABLE = ("pre-adj", "pre-verb", "end")
_ARTICLE_BEFORE = re.compile(r"(?:^|(?<=[\s\"'(]))(an|a) $", re.IGNORECASE)
_WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True)
class Group:
    """Contiguous adverbs safe mode removes from one caption: offsets into the original, category, slot."""

    start: int
    end: int
    text: str
    category: str
    slot: str | None  # pre-adj, pre-verb, post-verb, start, end; None: no slot we refill safely


# --------------------------------------------------------------------------- slots in a parsed caption

def _groups(result) -> list[tuple[int, int, str]]:
    """Safe mode's removed spans merged where only spaces separate them: (start, end, category of the last)."""
    out: list[list] = []
    for s in sorted(result.removed, key=lambda s: s.start):
        if out and not result.original[out[-1][1]:s.start].strip():
            out[-1][1], out[-1][2], out[-1][3] = s.end, s.category, out[-1][3] + 1
        else:
            out.append([s.start, s.end, s.category, 1])
    return [(a, b, c) if n == 1 else (a, b, "") for a, b, c, n in out]  # "": several words, never refilled


def _neighbour(doc, i: int, step: int, skip: set[int]):
    """The first token from `i` in direction `step` that is not another adverb of the caption, a comma or
    a coordinating conjunction joining them ("quickly and gently resting": the slot of both is before the verb)."""
    j = i + step
    while 0 <= j < len(doc) and (j in skip or ((doc[j].pos_ == "CCONJ" or doc[j].text == ",")
                                               and 0 <= j + step < len(doc) and j + step in skip)):
        j += step
    return doc[j] if 0 <= j < len(doc) else None


def _gradable(tok) -> bool:
    return tok.tag_ in ("JJ", "RB", "VBN") and tok.pos_ in ("ADJ", "ADV", "VERB") and tok.is_alpha \
        and tok.is_lower and tok.lower_ not in _NOT_GRADABLE


def slot_of(doc, start: int, end: int, category: str, word: str, others: set[int]) -> str | None:
    """The slot of the adverb at character offsets [start, end) of `doc`'s text, or None when it stands where
    another word of its category might not fit. `others`: token indices of the caption's other removable adverbs."""
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is None or len(span) != 1 or not category or word.lower() in _NEVER_DRAWN:
        return None
    i = span[0].i
    skip = others | {i}
    nxt, prev = _neighbour(doc, i, 1, skip), _neighbour(doc, i, -1, skip)
    if category == "degree":
        ok = word.lower() in PREMODIFIERS and nxt is not None and _gradable(nxt) and nxt.i == _next_index(doc, i, skip)
        return "pre-adj" if ok else None
    if nxt is not None and nxt.tag_ in _VERB_TAGS | {"VB"} and nxt.pos_ == "VERB":
        return "pre-verb"
    if prev is None:
        return "start" if nxt is not None and doc[i + 1].text == "," else None
    if nxt is None or (nxt.is_punct and nxt.i == len(doc) - 1 and nxt.text in ".!"):
        w = word.lower()
        return "end" if w in _END_WORDS or (w.endswith("ly") and len(w) > 4) else None
    if prev.pos_ == "VERB" and nxt.pos_ == "ADP":
        return "post-verb"
    return None


def _next_index(doc, i: int, skip: set[int]) -> int:
    """The index right after the run of adverbs (and their conjunctions) that `i` is in."""
    j = i + 1
    while j < len(doc) and (j in skip or (doc[j].pos_ == "CCONJ" and j + 1 in skip)):
        j += 1
    return j


def insertion_sites(doc) -> dict[str, list[int]]:
    """Where an adverb can go in a caption without one: slot -> character offsets (insert `word + " "` there,
    or `" " + word` for `end`). Pre-adj: a plain gradable adjective after a/the, a number, a preposition, a
    conjunction or a form of "be"; pre-verb: a verb after its subject (not at the start, not a prenominal
    participle); end: a caption ending in a noun."""
    text = doc.text
    sites: dict[str, list[int]] = {"pre-adj": [], "pre-verb": [], "end": []}
    for t in doc:
        if t.i == 0 or text[t.idx - 1] != " " or "-" in text[max(0, t.idx - 2):t.idx + len(t) + 1]:
            continue
        prev = doc[t.i - 1]
        if prev.pos_ in ("ADV", "PART") or prev.lower_ in ("not", "no", "never"):
            continue
        # a compound's first word ("off white", "tree lined") is no determiner, number or verb: the test on `prev`
        # and on where the head is (a noun to the right, or the verb "be") keeps degree words out of compounds
        if t.pos_ == "ADJ" and t.tag_ == "JJ" and _gradable(t) and prev.pos_ in _DEGREE_AFTER_POS \
                and (prev.pos_ != "ADP" or prev.i > 0) \
                and (t.dep_ == "acomp" or (t.dep_ == "amod" and t.head.i > t.i and t.head.pos_ in ("NOUN", "PROPN"))):
            sites["pre-adj"].append(t.idx)
        elif t.pos_ == "VERB" and t.tag_ in _VERB_TAGS and t.is_lower and t.head.i <= t.i \
                and t.dep_ in _CLAUSE_VERB_DEPS and prev.pos_ in ("NOUN", "PROPN", "PRON", "AUX") and prev.is_alpha \
                and t.i + 1 < len(doc) and t.lower_ not in ("been", "being", "having") \
                and (t.tag_ not in ("VBN", "VBD") or prev.pos_ == "AUX"
                     or doc[t.i + 1].pos_ in ("ADP", "PUNCT", "DET", "PRON")):
            # a bare -ed form right before a noun is a compound's part ("a tree lined street"), not a clause's verb
            sites["pre-verb"].append(t.idx)
    words = [t for t in doc if not t.is_punct and not t.is_space]
    tail = doc.text[words[-1].idx + len(words[-1]):] if words else ""
    has_verb = any(t.pos_ == "VERB" for t in doc)  # an adverb closing a verbless caption has nothing to modify
    if words and has_verb and words[-1].pos_ == "NOUN" and words[-1].is_alpha and tail.strip() in ("", ".", "!") \
            and not tail.startswith(" ."):
        sites["end"].append(words[-1].idx + len(words[-1]))
    return sites


# --------------------------------------------------------------------------- the pool

@dataclass
class Pool:
    """Words to draw, by (category, slot), with weights (counts in the dataset, or 1 for a word list)."""

    words: dict  # (category, slot) -> Counter(word -> weight)
    source: str  # "dataset" or "word list"

    def draw(self, rng: random.Random, key, exclude=()) -> str | None:
        items = [(w, c) for w, c in sorted(self.words.get(key, {}).items()) if w not in exclude]
        if not items:
            return None
        return rng.choices([w for w, _ in items], weights=[c for _, c in items])[0]

    def category_weights(self) -> Counter:
        out = Counter()
        for (cat, _), words in self.words.items():
            out[cat] += sum(words.values())
        return out

    def to_json(self) -> dict:
        return {"source": self.source,
                "words": {f"{c}/{s}": dict(sorted(w.items(), key=lambda kv: (-kv[1], kv[0])))
                          for (c, s), w in sorted(self.words.items())}}


def pool_from_groups(groups_by_caption) -> Pool:
    """The dataset's own pool: every refillable adverb with its slot and how often it occurs."""
    words: dict = {}
    for groups in groups_by_caption:
        for g in groups:
            if g.slot is not None:
                words.setdefault((g.category, g.slot), Counter())[g.text.lower()] += 1
    return Pool(words, "dataset")


def pool_from_words(word_list, adverb_filter, dataset_pool: Pool | None = None) -> Pool:
    """A pool of the given words: each in the slots the dataset shows it in, plus the slot its category allows
    everywhere (degree: before an adjective, only premodifiers; the others: before a verb). Each word must be an
    adverb safe mode removes; the category is the filter's, read in a short probe caption."""
    words: dict = {}
    for raw in word_list:
        w = raw.strip().lower()
        if not w:
            continue
        if " " in w:
            raise ValueError(f"decorrelate pool: {raw!r} has several words; give single adverbs")
        if w in _NEVER_DRAWN:
            raise ValueError(f"decorrelate pool: {raw!r} cannot be drawn: it needs particular words around it "
                             f"(e.g. 'a {w} old car' is wrong); give plain adverbs such as very, quickly, now")
        category = _probe_category(adverb_filter, w)
        if category is None:
            raise ValueError(f"decorrelate pool: {raw!r} is not an adverb safe mode removes (degree, manner, time "
                             "or stance); give such adverbs, or leave the pool empty to use the dataset's own")
        if category == "degree" and w not in PREMODIFIERS:
            raise ValueError(f"decorrelate pool: {raw!r} is a degree word that does not premodify every adjective "
                             f"(e.g. 'a {w} old car'); usable degree words: {', '.join(sorted(PREMODIFIERS))}")
        words.setdefault((category, _LIST_SLOTS[category]), Counter())[w] += 1
        for (cat, slot), seen in (dataset_pool.words.items() if dataset_pool else ()):
            if w in seen:
                words.setdefault((cat, slot), Counter())[w] += 1
    if not words:
        raise ValueError("decorrelate pool: the word list is empty")
    return Pool(words, "word list")


def _probe_category(adverb_filter, word: str) -> str | None:
    for probe in (f"a man {word} riding a horse", f"a {word} large dog"):
        res = adverb_filter.filter_text(probe)
        cats = [s.category for s in res.removed if s.text.lower() == word]
        if cats and cats[0] in CATEGORIES:
            return cats[0]
    return None


# --------------------------------------------------------------------------- the variants

def _match_case(word: str, like: str, caption: str) -> str:
    if caption.upper() == caption and any(c.isalpha() for c in caption):
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _fix_article(text: str, at: int) -> str:
    """Re-agree an "a"/"an" standing right before offset `at` (one space between) with the word at `at`."""
    m = _ARTICLE_BEFORE.search(text[:at])
    word = _WORD.match(text[at:])
    if not m or not word:
        return text
    art = m.group(1)
    caps = text.upper() == text and any(c.isalpha() for c in text)  # write it in capitals, as the caption is
    # read capitals as words, not acronyms, by the filter's own test (`repair.rebuild` agrees articles with it too)
    new = article_for(word.group(0), all_caps=is_all_caps(text))
    new = new.upper() if caps or (art.isupper() and len(art) > 1) else new.capitalize() if art[:1].isupper() else new
    return text[:m.start(1)] + new + text[m.end(1):]


def substitute(original: str, groups: list[Group], words: list[str]) -> str:
    """`original` with each group's text replaced by the word drawn for it (right to left, articles re-agreed)."""
    text = original
    for g, w in sorted(zip(groups, words), key=lambda gw: -gw[0].start):
        text = text[:g.start] + _match_case(w, g.text, original) + text[g.end:]
        text = _fix_article(text, g.start)
    return text


def insert(text: str, placed: list[tuple[int, str, list[str]]]) -> str:
    """`text` with words inserted: (offset, slot, words); several words at one offset are joined by "and"."""
    out = text
    for at, slot, ws in sorted(placed, key=lambda p: -p[0]):
        phrase = " and ".join(ws)
        if slot == "end":
            out = out[:at] + " " + _match_case(phrase, "x", text) + out[at:]
        else:
            out = out[:at] + _match_case(phrase, "x", text) + " " + out[at:]
            out = _fix_article(out, at)
    return out


@dataclass
class _Plan:
    index: int
    original: str
    safe_text: str
    groups: list[Group]
    draws: list[int]  # adverbs per variant


class Decorrelator:
    """Builds K decorrelated variants per caption; see the module docstring."""

    def __init__(self, adverb_filter=None, variants: int = DEFAULT_VARIANTS, rate: float | None = None,
                 seed: int = 0, pool_words=(), check_hazards: bool = True):
        from .adverbs import AdverbFilter

        if variants < 1:
            raise ValueError(f"decorrelate variants must be at least 1, got {variants}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError(f"decorrelate rate must be a share between 0 and 1 (or unset: the dataset's own), "
                             f"got {rate}")
        self.filter = adverb_filter or AdverbFilter("safe")
        if self.filter.mode != "safe":
            raise ValueError("decorrelate works on safe mode's adverbs: give an AdverbFilter('safe')")
        self.variants, self.rate, self.seed = variants, rate, seed
        self.pool_words = tuple(w for w in pool_words if w.strip())
        self.check_hazards = check_hazards  # the safety net; the hazard bench turns it off to see the rules alone
        self.stats: Counter = Counter()

    @property
    def settings(self) -> dict:
        return {"variants": self.variants, "rate": self.rate, "seed": self.seed, "pool_words": list(self.pool_words),
                "decorrelate_version": DECORRELATE_VERSION}

    def _rng(self, index: int, original: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}\x00{index}\x00{original}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def run(self, originals: list[str], filtered=None, workers=None, cache_dir=None, progress=False):
        """(variants per caption, filter results, report) for `originals`; `filtered`: safe-mode results if known."""
        nlp = self.filter.nlp
        results = filtered or self.filter.filter_texts(originals, workers=workers, cache_dir=cache_dir,
                                                       progress=progress)
        # slots of the adverbs safe mode removes, from a parse of the captions that have any
        with_adverbs = [i for i, r in enumerate(results) if r.removed]
        docs = dict(zip(with_adverbs, nlp.pipe([results[i].original for i in with_adverbs], batch_size=256)))
        plans = []
        for i, r in enumerate(results):
            groups = []
            if r.removed:
                doc, raw = docs[i], _groups(r)
                spans = [doc.char_span(a, b, alignment_mode="expand") for a, b, _ in raw]
                idx = {t.i for s in spans if s is not None for t in s}
                for (a, b, cat), s in zip(raw, spans):
                    others = idx - ({t.i for t in s} if s is not None else set())
                    groups.append(Group(a, b, r.original[a:b], cat, slot_of(doc, a, b, cat, r.original[a:b], others)))
            plans.append(_Plan(i, r.original, r.text, groups, []))
        self.pool = pool_from_groups(p.groups for p in plans)
        if self.pool_words:
            self.pool = pool_from_words(self.pool_words, self.filter, self.pool)
        counts = Counter(min(len(p.groups), MAX_INSERTED) for p in plans)
        own_rate = 1 - counts[0] / max(1, len(plans))
        rate = own_rate if self.rate is None else self.rate
        with_any = sum(v for k, v in counts.items() if k > 0)
        # P(n adverbs | any) from the data (one adverb when the data has none and a rate is set)
        given_any = {k: v / with_any for k, v in counts.items() if k > 0} if with_any else {1: 1.0}
        rngs = [self._rng(p.index, p.original) for p in plans]
        for p, rng in zip(plans, rngs):
            for _ in range(self.variants):
                n = 0 if rng.random() >= rate else rng.choices(sorted(given_any), [given_any[k] for k in
                                                                                   sorted(given_any)])[0]
                p.draws.append(n)
        # parse the safe texts that get an adverb inserted in some variant
        need = sorted({p.index for p in plans if any(n and not self._in_place(p, n) for n in p.draws)})
        safe_docs = dict(zip(need, nlp.pipe([plans[i].safe_text for i in need], batch_size=256)))
        out = []
        self.stats = Counter()
        examples = []
        for p, rng in zip(plans, rngs):
            texts = [self._variant(p, n, rng, safe_docs.get(p.index)) for n in p.draws]
            out.append(texts)
            if len(examples) < 12 and any(t != p.original for t in texts) and (p.groups or len(examples) < 6):
                examples.append({"original": p.original, "variants": texts})
        report = {"mode": MODE, **self.settings, "captions": len(plans),
                  "rate_target": rate, "rate_source": "dataset" if self.rate is None else "set",
                  "dataset_rate": own_rate,
                  "adverbs_per_caption_in_data": {str(k): v for k, v in sorted(counts.items())},
                  "rate_achieved": sum(t != p.safe_text for p, v in zip(plans, out) for t in v)
                  / max(1, len(plans) * self.variants),
                  "replaced_by_category": dict(self._by("replaced")), "inserted_by_category": dict(self._by("inserted")),
                  "removed_variants": self.stats["removed"], "no_slot": self.stats["no_slot"],
                  "fallbacks": self.stats["fallback"], "pool": self.pool.to_json(), "examples": examples}
        return out, results, report

    def _by(self, what: str) -> Counter:
        return Counter({k.split(":", 1)[1]: v for k, v in self.stats.items() if k.startswith(what + ":")})

    def _in_place(self, p: _Plan, n: int) -> bool:
        return n == len(p.groups) and all(g.slot is not None and self.pool.words.get((g.category, g.slot))
                                          for g in p.groups)

    def _variant(self, p: _Plan, n: int, rng: random.Random, safe_doc) -> str:
        text = self._draw(p, n, rng, safe_doc)
        if text != p.safe_text and self.check_hazards and hazards(p.safe_text, text):
            self.stats["fallback"] += 1
            text = p.safe_text
        return text

    def _draw(self, p: _Plan, n: int, rng: random.Random, safe_doc) -> str:
        if n == 0:
            self.stats["removed" if p.groups else "plain"] += 1
            return p.safe_text
        if self._in_place(p, n):
            chosen: list[str] = []
            for g in p.groups:
                w = self.pool.draw(rng, (g.category, g.slot), exclude=chosen) or \
                    self.pool.draw(rng, (g.category, g.slot))
                chosen.append(w)
                self.stats[f"replaced:{g.category}"] += 1
            return substitute(p.original, p.groups, chosen)
        sites = insertion_sites(safe_doc)
        weights = self.pool.category_weights()
        placed: dict[int, tuple[str, str, list[str]]] = {}  # offset -> (slot, category, words)
        used: list[str] = []
        for _ in range(n):
            options = []  # (weight, category, slot, offset or None to join an earlier insertion)
            for (cat, slot), ws in sorted(self.pool.words.items()):
                if slot not in _INSERTABLE or not ws:
                    continue
                free = [o for o in sites.get(slot, ()) if o not in placed]
                joins = [o for o, (s, c, w) in placed.items() if s == slot == "pre-verb" and c == cat and len(w) == 1]
                if free or joins:
                    options.append((weights[cat] * sum(ws.values()), cat, slot, free, joins))
            if not options:
                self.stats["no_slot"] += 1
                break
            _, cat, slot, free, joins = rng.choices(options, weights=[o[0] for o in options])[0]
            word = self.pool.draw(rng, (cat, slot), exclude=used)
            if word is None:
                self.stats["no_slot"] += 1
                break
            used.append(word)
            if free:
                placed[rng.choice(free)] = (slot, cat, [word])
            else:
                placed[joins[0]][2].append(word)
            self.stats[f"inserted:{cat}"] += 1
        if not placed:
            return p.safe_text
        return insert(p.safe_text, [(o, s, w) for o, (s, _, w) in placed.items()])


def decorrelate_adverbs(caption_set: CaptionSet, variants: int = DEFAULT_VARIANTS, rate: float | None = None,
                        seed: int = 0, pool=(), workers=None, cache_dir=None, model=None,
                        progress: bool = False) -> CaptionSet:
    """A new set whose records carry K decorrelated `variants` (the caption is the first); `original` and
    `removed` (safe mode's spans: the words made independent of the image) as for the filter. The provenance
    (`adverb_filter`) holds mode, pool, rate, K, seed, counts per category and examples."""
    from .adverbs import FILTER_VERSION, AdverbFilter, model_info

    f = AdverbFilter("safe", model=model)
    d = Decorrelator(f, variants=variants, rate=rate, seed=seed, pool_words=pool)
    sources = [r.original if r.original is not None else r.caption for r in caption_set.records]
    texts, results, report = d.run(sources, workers=workers, cache_dir=cache_dir, progress=progress)
    records = [replace(r, caption=v[0], original=res.original, removed=res.removed, variants=tuple(v))
               for r, res, v in zip(caption_set.records, results, texts)]
    categories = Counter(s.category for res in results for s in res.removed)
    info = {**f.settings, **model_info(f.nlp), "filter_version": FILTER_VERSION, "mode": MODE,
            "captions": len(results), "changed": sum(any(t != res.original for t in v) for v, res in zip(texts, results)),
            "removed_by_category": dict(categories.most_common()), "decorrelate": report}
    return caption_set.with_records(records, adverb_filter=info)


def summary_lines(report: dict, examples: int = 3) -> list[str]:
    """The decorrelation report in a few lines: rate, counts per category, pool, examples."""
    def counts(d):
        return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"

    pool = "; ".join(f"{slot}: " + ", ".join(f"{w} ({n})" for w, n in list(words.items())[:8])
                     for slot, words in report["pool"]["words"].items()) or "empty"
    lines = [f"decorrelate: {report['captions']} captions x {report['variants']} variants, seed {report['seed']}; "
             f"adverbs in {report['rate_achieved']:.1%} of the variants (target {report['rate_target']:.1%}, "
             f"{'the data' + chr(39) + 's own' if report['rate_source'] == 'dataset' else 'set'})",
             f"  replaced in place: {counts(report['replaced_by_category'])}; inserted: "
             f"{counts(report['inserted_by_category'])}; no slot: {report['no_slot']}; "
             f"hazard fallbacks: {report['fallbacks']}",
             f"  pool ({report['pool']['source']}): {pool}"]
    for ex in report["examples"][:examples]:
        lines.append(f"  {ex['original']}  ->  " + " | ".join(ex["variants"]))
    return lines


MODES = ("safe", "all", "intensifiers", MODE)  # every caption mode: the filter's and this one ("none": untouched)


def process_captions(caption_set: CaptionSet, mode: str, *, variants: int = DEFAULT_VARIANTS,
                     rate: float | None = None, seed: int = 0, pool=(), **filter_kwargs) -> CaptionSet:
    """The caption set for adverb `mode`: `decorrelate` -> `decorrelate_adverbs`, a filter mode -> `filter_adverbs`,
    `none` -> unchanged. One entry point for the CLI, `prepare`, training, the ComfyUI node and the webui tab."""
    if mode == "none":
        return caption_set
    if mode == MODE:
        switches = [k for k in ("keep", "remove", "remove_categories", "keep_categories") if filter_kwargs.get(k)]
        if switches:
            raise ValueError(f"adverb mode decorrelate works on the adverbs safe mode removes (degree, manner, time, "
                             f"stance); {', '.join(switches)} apply to the filter modes only: leave them empty")
        keep = {k: filter_kwargs[k] for k in ("workers", "cache_dir", "model", "progress") if k in filter_kwargs}
        return decorrelate_adverbs(caption_set, variants=variants, rate=rate, seed=seed, pool=pool, **keep)
    from .adverbs import filter_adverbs

    return filter_adverbs(caption_set, mode=mode, **filter_kwargs)
