"""`python -m trainer train` and `python -m trainer demo` (heavy imports stay inside the commands)."""
from __future__ import annotations

import argparse
import errno
import re
import signal
import sys
from pathlib import Path


class _IntermixedParser(argparse.ArgumentParser):
    """Options and KEY=VALUE overrides in any order (`a=1 --no-progress b=2`): plain argparse fills a `*`
    positional once, so overrides after an option would be rejected as unrecognized."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls this again, for each of its two passes
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def register(subparsers) -> None:
    """Add the `train` and `demo` sub-commands."""
    plain, subparsers._parser_class = subparsers._parser_class, _IntermixedParser
    try:
        p = subparsers.add_parser(
            "train", help="train a UNet LoRA from a YAML config",
            description="Train a UNet LoRA. Example: python -m trainer train --config "
                        "trainer/configs/train_config.yaml train.max_train_steps=200 logging.output_dir=runs/a",
        )
    finally:
        subparsers._parser_class = plain
    p.add_argument("--config", help="YAML config (examples in trainer/configs/); defaults when omitted")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.learning_rate=5e-5")
    p.add_argument("--resume", nargs="?", const="latest", metavar="CHECKPOINT",
                   help="continue exactly: the newest checkpoint in logging.output_dir, or the given checkpoint folder "
                        "(or run folder: its newest checkpoint) "
                        "(without --config, that run's config.yaml is used); a KEY=VALUE right after it is an "
                        "override, and the newest checkpoint is resumed")
    p.add_argument("--list-options", action="store_true", help="print every config key with its default and doc")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (metrics still go to logs/)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a logging.output_dir that holds an earlier run's checkpoints or LoRA, "
                        "deleting that run's files first (without it, such a folder is refused)")
    p.set_defaults(func=run_train)

    d = subparsers.add_parser(
        "demo", help="the whole pipeline on the built-in tiny model and sample data (CPU, about a minute)",
        description="Generate the sample COCO-format dataset, remove adverbs from its captions, train the tiny "
                    "built-in SD1.5-layout model (or --model tiny-sd2 / tiny-sdxl) for ~50 steps, and write the webui "
                    "LoRA, loss plot and a sample image.",
    )
    d.add_argument("--model", default="tiny-sd15", choices=("tiny-sd15", "tiny-sd2", "tiny-sdxl"),
                   help="built-in tiny model: SD1.5, SD2.x (v-prediction) or SDXL layout (default: tiny-sd15)")
    d.add_argument("--output", default="outputs/demo", help="output folder (default: outputs/demo)")
    d.add_argument("--steps", type=int, default=50, help="training steps (default: 50)")
    d.add_argument("--images", type=int, default=24, help="sample images to generate (default: 24)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=run_demo)


OVERRIDE_RE = re.compile(r"^[A-Za-z_][\w.]*=")  # dotted.key=value


def _resume_or_override(args) -> None:
    """`--resume KEY=VALUE ...`: argparse hands the override to --resume; give it back and resume the latest.

    A value naming an existing folder stays a checkpoint path even when it holds `=`.
    """
    if args.resume and args.resume != "latest" and OVERRIDE_RE.match(args.resume) and not Path(args.resume).exists():
        args.overrides.insert(0, args.resume)
        args.resume = "latest"


def _config_for_resume(args) -> str | None:
    """Without --config, a resumed run reads the config.yaml its output folder holds."""
    if args.config or not args.resume:
        return args.config
    if args.resume != "latest":
        given = Path(args.resume)  # a checkpoint folder, or a run folder (its newest checkpoint)
        candidate = (given if (given / "config.yaml").is_file() else given.parent) / "config.yaml"
    else:
        out = next((o.partition("=")[2] for o in args.overrides if o.startswith("logging.output_dir=")), None)
        if out is None:
            raise SystemExit("--resume without --config: say which run, e.g. --resume runs/a/checkpoint-100 or "
                             "logging.output_dir=runs/a")
        candidate = Path(out) / "config.yaml"
    if not candidate.is_file():
        raise SystemExit(f"--resume: {candidate} not found; pass --config with the run's config")
    return str(candidate)


def run_train(args) -> int:
    from ..training.config import ConfigError, load_config, option_docs

    if args.list_options:
        for key, (default, doc) in option_docs().items():
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    _resume_or_override(args)
    try:
        cfg = load_config(_config_for_resume(args), args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from ..training.train import NonFiniteLossError, train

    try:
        result = train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        where = e.filename or cfg.logging.output_dir
        print(f"error: {e.strerror if 'no space' in str(e.strerror).lower() else 'no space left on device'} "
              f"({where}); the last complete checkpoint is kept: free some space and resume with "
              f"python -m trainer train --resume {cfg.logging.output_dir}", file=sys.stderr)
        return 1
    if result.stopped_early:
        print(f"stopped at step {result.final_step} ({result.stop_reason}); resume with: "
              f"python -m trainer train --resume {result.checkpoint_dir}")
        # Non-zero: `train && next` must not go on with an unfinished LoRA (128 + signal, as a shell reports it).
        return {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}.get(result.stop_reason, 1)
    print(f"done: {result.final_step} steps; LoRA {result.lora_path}; PEFT adapter {result.peft_dir}")
    return 0


def run_demo(args) -> int:
    from .demo import run_demo as demo

    demo(args.output, steps=args.steps, n_images=args.images, progress=not args.no_progress, model=args.model)
    return 0
