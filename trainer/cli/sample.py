"""`python -m trainer sample` and `python -m trainer eval-adverbs` (heavy imports stay inside the commands)."""
from __future__ import annotations

from ..generate.evaluate import register_eval
from ..generate.sample import register_sample


def register(subparsers) -> None:
    """Add the `sample` and `eval-adverbs` sub-commands."""
    register_sample(subparsers)
    register_eval(subparsers)
