"""`python -m convert`: convert, inspect and verify Stable Diffusion LoRA files.

Exit codes: 0 success, 1 `--verify` found differences, 2 bad input / usage (one-line error on stderr).
"""
from __future__ import annotations

import argparse
import errno
import gc
import json
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

EXAMPLES = """examples:
  python -m convert --to_webui out/checkpoint-500            # PEFT dir -> checkpoint-500_webui.safetensors
  (INPUT/FILE/A/B: a LoRA file, a PEFT adapter dir, a checkpoint-<step>/ or a training run folder: its final LoRA)
  python -m convert --to_peft my_lora.safetensors -o my_lora_peft
  python -m convert --to_diffusers my_lora.safetensors --fold-alpha
  python -m convert --inspect my_lora.safetensors
  python -m convert --verify out/checkpoint-500 my_lora.safetensors
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--to_webui", "--to-webui", metavar="INPUT", help="write a kohya/sd-webui/ComfyUI .safetensors")
    action.add_argument("--to_diffusers", "--to-diffusers", metavar="INPUT",
                        help="write diffusers pytorch_lora_weights.safetensors (pipe.load_lora_weights)")
    action.add_argument("--to_peft", "--to-peft", metavar="INPUT", help="write a PEFT adapter dir")
    action.add_argument("--inspect", metavar="FILE", help="show format, base family, modules, rank/alpha, metadata")
    action.add_argument("--verify", nargs=2, metavar=("A", "B"), help="compare ΔW of every module of two LoRAs")
    p.add_argument("-o", "--output", help="output file (webui, diffusers) or dir (peft, diffusers); "
                   "default: next to the input, suffixed _webui/_diffusers/_peft")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], help="output tensor dtype (alpha is always fp32; "
                   "default: the input's)")
    p.add_argument("--ldm-names", action="store_true", help="webui output with LDM UNet names (input_blocks_...)")
    p.add_argument("--fold-alpha", action="store_true",
                   help="diffusers/PEFT output: fold alpha/rank into lora_B and write alpha = rank")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--allow-unknown", action="store_true", help="drop keys that map to no module (listed) "
                   "instead of failing")
    p.add_argument("--allow-nonfinite", action="store_true", help="read a LoRA whose weights hold NaN/inf "
                   "(warned, modules named) instead of failing")
    p.add_argument("--rtol", type=float, default=1e-5, help="--verify: relative tolerance (default 1e-5)")
    p.add_argument("--atol", type=float, default=1e-8, help="--verify: absolute tolerance (default 1e-8)")
    p.add_argument("--json", action="store_true", help="--inspect: print JSON")
    return p


def default_output(src: Path, kind: str) -> Path:
    stem = src.name if src.is_dir() else src.stem
    if kind == "webui":
        return src.parent / f"{stem}_webui.safetensors"
    return src.parent / f"{stem}_{kind}"


def run(args) -> int:
    from . import format_report, inspect_lora, load_any, save_diffusers, save_peft, save_webui, verify

    if args.inspect:
        info = inspect_lora(load_any(args.inspect, allow_unknown=args.allow_unknown, allow_nonfinite=args.allow_nonfinite))
        print(json.dumps(info, indent=2, default=str) if args.json else format_report(info))
        return 0
    if args.verify:
        a, b = (load_any(p, allow_unknown=args.allow_unknown, allow_nonfinite=args.allow_nonfinite) for p in args.verify)
        report = verify(a, b, rtol=args.rtol, atol=args.atol)
        print(report.summary())
        return 0 if report.ok else 1
    src = Path(args.to_webui or args.to_diffusers or args.to_peft)
    kind = "webui" if args.to_webui else "diffusers" if args.to_diffusers else "peft"
    if kind == "webui" and args.fold_alpha:
        raise ValueError("--fold-alpha is for --to_diffusers/--to_peft; webui files carry alpha per module")
    if kind != "webui" and args.ldm_names:
        raise ValueError("--ldm-names is for --to_webui only")
    out = Path(args.output) if args.output else default_output(src, kind)
    lora = load_any(src, allow_unknown=args.allow_unknown, allow_nonfinite=args.allow_nonfinite)
    try:
        if kind == "webui":
            written = save_webui(lora, out, ldm_names=args.ldm_names, dtype=args.dtype, overwrite=args.force)
        elif kind == "diffusers":
            written = save_diffusers(lora, out, fold_alpha=args.fold_alpha, overwrite=args.force, dtype=args.dtype)
        else:
            written = save_peft(lora, out, fold_alpha=args.fold_alpha, overwrite=args.force, dtype=args.dtype)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        # Name the output the user asked for, not the temp file inside it that was being written (and is gone).
        raise OSError(errno.ENOSPC, f"no space left on device writing {out}: nothing was written (the temp "
                                    "files are removed); free some space or choose another -o/--output") from None
    print(f"{lora.format} -> {kind}: {len(lora.modules)} modules, family {lora.family or 'unknown'} -> {written}")
    return 0


@contextmanager
def collector_off_old_objects():
    """Keep the cyclic GC from re-scanning every object that exists already (`gc.freeze`), undone on exit.

    Importing torch leaves ~165k tracked objects, and the few thousand a conversion allocates can tip the
    collector into a full pass over all of them: 150-400 ms on a 2-core machine, as long as reading
    and writing a whole 150 MB LoRA. A conversion makes no garbage cycles worth that; new objects are still collected.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()  # an in-process caller (tests, a host app) gets its objects back under the collector


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    saved, warnings.showwarning = warnings.showwarning, show
    try:
        with collector_off_old_objects():
            return run(args)
    except (ValueError, FileExistsError, FileNotFoundError, OSError) as e:
        disk_full = isinstance(e, OSError) and e.errno == errno.ENOSPC and not e.filename
        print(f"error: {e.strerror if disk_full else e}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
