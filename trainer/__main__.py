"""`python -m trainer <command>`: prepare data, filter adverbs, train, sample, evaluate."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module (under trainer/cli/) registers its sub-commands with `register(subparsers)` and keeps heavy imports
# (torch, diffusers, spaCy) inside the command functions, so `--help` stays instant.
COMMAND_MODULES = ("cli.captions", "cli.train", "cli.sample")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Fine-tune Stable Diffusion's UNet with LoRA on captions whose adverbs were removed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = __package__ or "trainer"
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":
                raise
            continue  # that part of the toolkit is not installed in this build
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the sub-command; its exit code."""
    from .cli import quiet_unused_components

    quiet_unused_components()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if argv is None and len(sys.argv) == 1 else 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
