"""Data files shipped inside the package (CLIP tokenizer, model configs for single-file checkpoints)."""
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
CLIP_TOKENIZER_DIR = ASSETS_DIR / "clip_tokenizer"
