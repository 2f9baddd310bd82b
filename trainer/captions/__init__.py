"""Caption data: load (COCO, image folders, HF datasets), filter adverbs, save/load processed sets.

Depends on nothing else in `trainer` but `trainer.atomic`; never on models, training or generation.
"""
