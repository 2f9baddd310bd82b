"""Remove adverbs from captions with spaCy's part-of-speech tagger, leaving captions that read naturally.

Every adverb is put in a category by the one table in `table.py` (degree, manner, time, stance -- which
say nothing about the picture -- and spatial, appearance, focus, other -- which may or must stay); a few
words are told apart by their role in spaCy's dependency parse (`table.ROLE_READINGS`).

Modes:
- ``safe`` (default): removes degree, manner, time and stance; keeps the rest.
- ``all``: every adverb except negations and wh-words. "Every adverb" is every token tagged ``ADV``
  plus adverbs the tagger gives another tag (lengthened degree words "sooooo", clause-initial "so",
  words English has only as adverbs tagged as nouns, count approximators the parse attaches to a number).
- ``intensifiers``: degree, stance and manner only.
``remove_categories`` / ``keep_categories`` change the removed categories of any mode but ``all``;
user ``keep`` / ``remove`` lists (words, phrases, ``@group`` names) override everything.

No mode removes a word inside quotation marks (text the picture shows: a sign, a label), the unquoted text of
a label ("an organically grown strip tag") or a word of a reduplicative expression ("back to back", "side by
side", "one by one"): `protect.protected`.
Every mode passes through the grammar guard (`guard.breaks_sentence`): a removal that would leave the
sentence less grammatical is skipped ("big enough to fit", "too far to reach", "a close up", "apiece
of", "looking upward holding", "parked nearby each other"), and removals that together would leave a
coordinator or a preposition dangling are put back (`coordination.dangling`: "the side and [back]"), unless the
coordinator can go with them (`repair.dropped`: "sits [intently and] happy"). Words the
tagger calls adverbs that are another part of speech here are never removed, not even with the adverb they
hang from (`readings.not_an_adverb`: "a pretty girl", "a still lake", "sitting still", "hydrant"). After repair
(`repair.rebuild`), every changed caption is checked with `hazards.hazards`; if any is found, the
caption is left unchanged (the safety net).

Modules, one question each: table (which category is this word?), protect (which words does no mode
touch?), readings (is this token an adverb here?), categorize (which category in this sentence?), guard (would
deleting it break the sentence?), coordination (would the removals together leave a coordinator or a
preposition dangling?), decide (which tokens go?), repair (what does the caption read after?), model (which
spaCy pipeline?), workers (how many processes?), cache (seen before?), filter (the public `AdverbFilter`).
"""
from __future__ import annotations

from ..articles import article_for  # noqa: F401  (re-exported: older callers import it from here)
from .cache import FilterCache, default_cache_dir
from .filter import BATCH_SIZE, FILTER_VERSION, MODES, AdverbFilter, FilterResult, filter_adverbs
from .model import MODEL_NAMES, SpacyModelMissing, TagToPos, load_spacy_model, model_info
from .table import CATEGORIES
from .workers import available_cores

__all__ = [
    "AdverbFilter", "FilterResult", "filter_adverbs", "MODES", "load_spacy_model", "SpacyModelMissing", "model_info",
    "FILTER_VERSION", "available_cores", "FilterCache", "default_cache_dir", "BATCH_SIZE", "MODEL_NAMES", "TagToPos",
    "CATEGORIES", "article_for",
]
