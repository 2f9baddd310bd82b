"""Base models and LoRA weights: load a base model (folder, hub id, single file, tiny test model), add,
apply and reference LoRA adapters.

Depends on nothing in `trainer.captions` or `trainer.training`.
"""
