"""Generation and evaluation with a base model and a LoRA: sampling and the adverb-sensitivity measure."""
