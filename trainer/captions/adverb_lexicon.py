"""Where the adverb filter's word lists used to live; kept so that old imports keep working.

The category table is `trainer.captions.adverbs.table`; the grammar word classes and the WordNet
lexicon are `trainer.captions.adverbs.words`.
"""
from __future__ import annotations

from .adverbs.table import (  # noqa: F401
    CATEGORIES, COUNT_FOCUS, INTENSIFIERS_REMOVED, QUANTITY_WORDS, SAFE_REMOVED, WORD_CATEGORY, words_in,
)
from .adverbs.words import *  # noqa: F401,F403
from .adverbs.words import GROUPS, adverb_lexicon, comparative_adjectives, expand_words, wordnet_index  # noqa: F401

DEGREE = words_in("degree")
TIME = words_in("time")
STANCE = words_in("stance")
SPATIAL = words_in("spatial")
APPEARANCE_WORDS = words_in("appearance")
MANNER_OF_MIND = words_in("manner")
TRUTH_CONDITIONAL = words_in("focus")
