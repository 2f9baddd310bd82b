"""The `python -m trainer` sub-commands: each module has `register(subparsers)`; `trainer/__main__.py` dispatches.

Heavy imports (torch, diffusers, spaCy) stay inside the command functions, so `--help` stays instant.
"""

import logging


class _UnusedImageProcessorFilter(logging.Filter):
    """Drops transformers' "`CLIPImageProcessor` requires torchvision ... falling back to ...Pil" warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("ImageProcessor` requires torchvision" in msg and "falling back to" in msg)


def quiet_unused_components() -> None:
    """Silence warnings about components the pack never loads (safety checker's image processor).

    diffusers' pipeline modules import `CLIPImageProcessor` (the safety checker's feature extractor) and
    `SiglipImageProcessor` at import time, for type hints; the pack always passes `feature_extractor=None`,
    `safety_checker=None`, yet transformers >= 5 without torchvision warns about both on every command.
    Only that message is dropped, only in our own commands (hosts keep their logging as it is).
    """
    logger = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _UnusedImageProcessorFilter) for f in logger.filters):
        logger.addFilter(_UnusedImageProcessorFilter())
