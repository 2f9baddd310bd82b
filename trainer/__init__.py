"""Headless trainer and caption pipeline: `python -m trainer --help`.

Importing this package is cheap: torch, diffusers, peft, accelerate and spaCy are imported only by
the modules that use them.
"""
