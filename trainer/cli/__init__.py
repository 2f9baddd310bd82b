"""The `python -m trainer` sub-commands: each module has `register(subparsers)`; `trainer/__main__.py` dispatches.

Heavy imports (torch, diffusers, spaCy) stay inside the command functions, so `--help` stays instant.
"""
