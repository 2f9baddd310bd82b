"""Host profiles: install the pack into sd-webui's, Forge's and ComfyUI's Python the way each host does,
on each host's own torch, and prove that no host package moved and that the pack works there.

    python .ci/hosts.py                     # every profile, two at a time
    python .ci/hosts.py sd-webui comfyui    # some
    python .ci/hosts.py --lock              # the same, resolving afresh and writing the locks below
    python .ci/hosts.py --keep forge        # keep the profile's environments afterwards, to look into them

Nothing floats: each host is installed from .ci/hosts/<profile>.lock, and what install.py adds (to the
host, or to the pack's own environment) is held to .ci/hosts/<profile>.pack.lock through PIP_CONSTRAINT,
which pip applies on top of install.py's own constraints. `--lock` records both from a fresh resolve.

For each profile, in a fresh virtual environment under .ci-hosts/ (git-ignored):
1. the host: its own torch (PROFILES below: what its installer puts there; the registry's 2.1.2 / 2.3.1 / 2.4.1
   are CUDA builds, which import and train on a CPU-only machine), then the host's own pins
   (.ci/hosts/<profile>.txt) with torch held;
2. the pack, installed as the host installs it: sd-webui and Forge run install.py with their `launch`
   module importable (a stand-in below that behaves like sd-webui's launch_utils: `is_installed`,
   `run_pip` through the shell); ComfyUI-Manager runs `pip install -r requirements.txt` (empty on
   purpose), then install.py;
3. asserts: no host package changed version (sd-webui/Forge: nothing added to the host either, as the
   pack keeps its own environment there); the host's own imports still work; the Python the pack uses
   imports the host's torch (no second torch) and holds what install.py fitted to it;
4. runs, with the Python the pack uses in that host: `trainer demo` (few steps), `trainer adverbs`
   and `convert --inspect` on the demo's LoRA;
5. sd-webui and Forge: the Adverb LoRA tab's tests (tests/test_webui_tab.py) with the host's Python and its own
   gradio (3.41.2 / 4.40.0), the trainer in the pack's environment. pytest, CI's harness and no part of the pack,
   is installed into the host only after the asserts of step 3.
Each profile's environments (some 5 GB: the older torches are CUDA builds) are removed when it is done, pass
or fail, unless --keep: four of them at once would fill a CI machine's disk. Its log stays in .ci-hosts/.
Standard library only; exits non-zero on the first profile that fails, after a summary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".ci-hosts"
HOST_IMPORTS_WEBUI = "import skimage, gradio; from transformers import CLIPTextModel; import numpy; print(numpy.__version__)"
HOST_IMPORTS_COMFYUI = ("import aiohttp, av, scipy, kornia, spandrel, numpy, safetensors; "
                        "from transformers import CLIPTextModel; assert numpy.__version__.startswith('1.'); "
                        "print(numpy.__version__)")
# torch: what each host's users have. sd-webui 1.10.1's modules/launch_utils.py installs "torch==2.1.2
# torchvision==0.16.2"; Forge recommends (README, its one-click package) CUDA 12.1 + torch 2.3.1, torchvision
# 0.18.1; ComfyUI names no version (its README: the current one): this machine's CPU 2.13, and an older
# install's 2.4.1 with its torchvision 0.19.1.
PROFILES = {
    "sd-webui": dict(pins="sd-webui-1.10.1.txt", way="launch", imports=HOST_IMPORTS_WEBUI, tab_tests=True,
                     torch=("torch==2.1.2", "torchvision==0.16.2")),
    "forge": dict(pins="forge.txt", way="launch", imports=HOST_IMPORTS_WEBUI, tab_tests=True,
                  torch=("torch==2.3.1", "torchvision==0.18.1")),
    "comfyui": dict(pins="comfyui.txt", way="manager", imports=HOST_IMPORTS_COMFYUI, torch=("torch==2.13.0",)),
    # ComfyUI on an older torch: install.py holds diffusers below 0.37 there (TORCH_NEEDS: 0.37/0.38 fail to import
    # on torch 2.4.x), so its first choice passes the smoke in ComfyUI's own Python.
    "comfyui-torch24": dict(pins="comfyui.txt", way="manager", imports=HOST_IMPORTS_COMFYUI,
                            torch=("torch==2.4.1", "torchvision==0.19.1")),
}
# The profiles run side by side, this many at a time: installs wait on disk and network, demos and tab tests on
# the CPU (CI's machine: 2 cores, the floor leg running alongside).
PARALLEL = int(os.environ.get("CI_HOSTS_PARALLEL", "2"))
# What install.py fits to the host's torch: reported per profile.
PACK_LIBS = ("diffusers", "transformers", "peft", "accelerate", "huggingface-hub")

# sd-webui's modules/launch_utils.py, the two names extensions' install.py use (same behaviour:
# importlib.metadata first, then find_spec; pip through the shell with --prefer-binary).
LAUNCH_STANDIN = '''
import importlib.metadata, importlib.util, subprocess, sys
python = sys.executable
def is_installed(package):
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:
            return False
        return spec is not None
    return dist is not None
def run_pip(command, desc=None, live=False):
    cmd = f'"{python}" -m pip {command} --prefer-binary'
    if desc is not None:
        print(f"Installing {desc}")
    result = subprocess.run(cmd, shell=True, capture_output=not live, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"Couldn't install {desc}.\\nCommand: {cmd}\\nError code: {result.returncode}\\n"
                           f"stdout: {result.stdout}\\nstderr: {result.stderr}")
    return result.stdout
'''


class ProfileFailed(RuntimeError):
    pass


def sh(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    print(f"  {what}: exit {proc.returncode} in {time.perf_counter() - t0:.0f}s", flush=True)
    if proc.returncode != 0:
        raise ProfileFailed(f"{what} failed:\n$ {' '.join(map(str, cmd))}\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


def versions(python: str) -> dict[str, str]:
    out = sh([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], "pip list").stdout
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out)}


def build_host(name: str, pins: str, torch: tuple[str, ...], lock: bool = False) -> str:
    """A fresh venv with the host's torch and pins; from the host's lock, or (lock=True) writing it."""
    folder = WORK / name
    shutil.rmtree(folder, ignore_errors=True)
    sh([sys.executable, "-m", "venv", str(folder)], "venv")
    python = str(folder / "bin" / "python")
    pip_env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}  # the host's lock, not CI's
    # --no-compile: byte-compiling torch's thousands of modules is most of its install time; Python
    # compiles what is imported anyway.
    sh([python, "-m", "pip", "install", "-q", "--no-compile", *torch], f"host {' '.join(torch)}", env=pip_env)
    hold = WORK / f"{name}-torch-constraint.txt"
    hold.write_text("".join(f"{t}\n" for t in torch))
    pins_file, lock_file = REPO / ".ci" / "hosts" / pins, REPO / ".ci" / "hosts" / f"{name}.lock"
    lock_args = [] if lock else ["-c", str(lock_file)]
    sh([python, "-m", "pip", "install", "-q", "-c", str(hold), *lock_args, "-r", str(pins_file)], "host pins",
       env=pip_env)
    make_torchvision_importable(python)
    if lock:
        freeze = sh([python, "-m", "pip", "freeze", "--all"], "pip freeze").stdout
        lock_file.write_text(f"# {name}: the resolve of {pins} (python .ci/hosts.py --lock)\n" + freeze)
    return python


def make_torchvision_importable(python: str) -> None:
    """The registry's torchvision is a CUDA build whose C ops cannot load beside the CPU torch these machines
    use; on import it then dies registering fake kernels for `torchvision::nms`. Real hosts have a matching
    torchvision, so give the profile one that imports: skip those registrations when the ops are absent
    (the two edits the ComfyUI e2e test's set-up makes; see tests/test_comfyui_e2e.py)."""
    probe = subprocess.run([python, "-c", "import torchvision"], capture_output=True, text=True)
    if probe.returncode == 0 or "torchvision::nms does not exist" not in probe.stderr:
        return
    code = ("import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('torchvision')"
            ".submodule_search_locations[0]) / '_meta_registrations.py')")
    meta = Path(sh([python, "-c", code], "find torchvision").stdout.strip())
    text = meta.read_text()
    text = text.replace("\n@torch.library.register_fake(", "\n@_register_fake(")
    text = text.replace("import torchvision.extension  # noqa: F401\n",
                        "import torchvision.extension  # noqa: F401\n_register_fake = torch.library.register_fake "
                        "if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f))\n", 1)
    meta.write_text(text)
    sh([python, "-c", "import torchvision"], "torchvision importable")


def install_pack(python: str, way: str, pack_env: Path, constraints: Path | None) -> None:
    env = {**os.environ, "SD_ADVERB_LORA_ENV": str(pack_env)}
    env.pop("PIP_CONSTRAINT", None)
    if constraints is not None:
        env["PIP_CONSTRAINT"] = str(constraints)
    if way == "launch":  # sd-webui: cwd is its root, where launch.py lives, and PYTHONPATH points there
        root = WORK / f"{pack_env.name}-webui-root"
        root.mkdir(parents=True, exist_ok=True)
        (root / "launch.py").write_text(LAUNCH_STANDIN)
        out = sh([python, str(REPO / "install.py")], "install.py (sd-webui way)", cwd=root,
                 env={**env, "PYTHONPATH": str(root)})
    else:  # ComfyUI-Manager: requirements.txt, then install.py, from the node's folder
        sh([python, "-m", "pip", "install", "-q", "-r", "requirements.txt"], "pip install -r requirements.txt",
           cwd=REPO, env=env)
        out = sh([python, "install.py"], "install.py", cwd=REPO, env=env)
    print("  | " + "\n  | ".join(out.stdout.strip().splitlines()))


def run_pack(python: str, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    sh([python, "-m", "trainer", "demo", "--steps", "4", "--images", "8", "--no-progress", "--output", str(out)],
       "trainer demo", cwd=REPO, env=env)
    proc = sh([python, "-m", "trainer", "adverbs"], "trainer adverbs", cwd=REPO, env=env,
              input="A very happy dog quickly running next to a fire hydrant.\n")
    if "very" in proc.stdout or "next to a fire hydrant" not in proc.stdout:
        raise ProfileFailed(f"trainer adverbs gave {proc.stdout!r}")
    lora = out / "run" / "demo_adverb_lora.safetensors"
    proc = sh([python, "-m", "convert", "--inspect", str(lora)], "convert --inspect", cwd=REPO, env=env)
    if "sd_v1" not in proc.stdout and "SD1" not in proc.stdout:
        raise ProfileFailed(f"convert --inspect did not name the family:\n{proc.stdout}")


def run_tab_tests(python: str, pack_env: Path) -> str:
    """tests/test_webui_tab.py in the host's Python (its gradio), the trainer in the pack's environment; pytest
    at CI's locked version. Fails unless every test ran and passed (a skip would mean gradio did not import)."""
    pin = next(ln.strip() for ln in (REPO / ".ci" / "lock.txt").read_text().splitlines()
               if ln.lower().startswith("pytest=="))
    pip_env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    sh([python, "-m", "pip", "install", "-q", pin], f"{pin} (CI harness)", env=pip_env)
    gradio = sh([python, "-c", "import gradio; print(gradio.__version__)"], "gradio version").stdout.strip()
    env = {**os.environ, "PYTHONPATH": "", "SD_ADVERB_LORA_ENV": str(pack_env), "OMP_NUM_THREADS": "1"}
    proc = sh([python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_webui_tab.py"],
              f"tab tests (gradio {gradio})", cwd=REPO, env=env)
    summary = proc.stdout.strip().splitlines()[-1]
    if "passed" not in summary or "skipped" in summary:
        raise ProfileFailed(f"tab tests did not all run: {summary}\n{proc.stdout[-3000:]}")
    print(f"  | {summary}")
    return gradio


def profile(name: str, lock: bool = False) -> str:
    spec = PROFILES[name]
    print(f"== {name} ({spec['pins']})", flush=True)
    t0 = time.perf_counter()
    python = build_host(name, spec["pins"], spec["torch"], lock=lock)
    before = versions(python)
    pack_env = WORK / f"{name}-pack-env"
    shutil.rmtree(pack_env, ignore_errors=True)
    pack_lock = REPO / ".ci" / "hosts" / f"{name}.pack.lock"
    install_pack(python, spec["way"], pack_env, None if lock else pack_lock)
    after = versions(python)
    moved = {n: f"{v} -> {after.get(n, 'removed')}" for n, v in before.items() if after.get(n) != v}
    if moved:
        raise ProfileFailed(f"host packages changed: {moved}")
    added = sorted(set(after) - set(before))
    if spec["way"] == "launch" and added:
        raise ProfileFailed(f"packages added to sd-webui's own Python: {added}")
    sh([python, "-c", spec["imports"]], "host imports")
    pack_python = str(pack_env / "bin" / "python") if (pack_env / "bin" / "python").exists() else python
    chose = pack_versions_on_host_torch(python, pack_python, before["torch"])
    if lock:  # what install.py added, wherever it went: the versions the pack's Python imports now
        pack = versions(pack_python)
        pins = sorted(f"{n}=={v}" for n, v in pack.items() if before.get(n) != v)
        pack_lock.write_text(f"# {name}: what install.py added (python .ci/hosts.py --lock)\n" + "\n".join(pins) + "\n")
    run_pack(pack_python, WORK / f"{name}-demo")
    where = "the pack's own environment" if pack_python != python else "the host's Python"
    tab = f"; tab tests passed on gradio {run_tab_tests(python, pack_env)}" if spec.get("tab_tests") else ""
    return (f"{name}: torch {before['torch']}; {len(before)} host packages unchanged, {len(added)} added to the "
            f"host; install.py chose {chose}; trainer demo + adverbs + convert --inspect ran in {where}{tab}; "
            f"{time.perf_counter() - t0:.0f}s")


def pack_versions_on_host_torch(host_python: str, pack_python: str, host_torch: str) -> str:
    """Assert that the pack's Python imports the host's torch (no second torch in the pack's environment) and
    return what install.py installed for it there, e.g. `diffusers 0.35.2, transformers 4.55.4, ...`."""
    code = "import torch, sys; print(torch.__version__); print(torch.__file__)"
    host = sh([host_python, "-c", code], "host torch").stdout.split()
    pack = sh([pack_python, "-c", code], "the pack's torch").stdout.split()
    if pack != host or host[0].split("+")[0] != host_torch.split("+")[0]:
        raise ProfileFailed(f"the pack's Python imports torch {pack}, the host's is {host}")
    have = versions(pack_python)
    return ", ".join(f"{n} {have.get(n, 'MISSING')}" for n in PACK_LIBS)


def remove_environments(name: str) -> None:
    """Everything a profile built under .ci-hosts/, its log excepted."""
    for path in (WORK / name, WORK / f"{name}-pack-env", WORK / f"{name}-pack-env-webui-root", WORK / f"{name}-demo"):
        shutil.rmtree(path, ignore_errors=True)
    (WORK / f"{name}-torch-constraint.txt").unlink(missing_ok=True)


def forget_smoke_passes() -> None:
    """Drop install.py's remembered smoke passes (SMOKE_STAMP, keyed by a Python's path) for the Pythons under
    .ci-hosts/: each profile rebuilds them, and a pass from an earlier run there must not skip the smoke. Done
    before any profile starts, as they write the same file."""
    stamp = REPO / ".install-smoke.json"
    try:
        stamps = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    kept = {python: key for python, key in stamps.items() if not Path(python).is_relative_to(WORK)}
    if kept != stamps:
        stamp.write_text(json.dumps(kept, indent=1), encoding="utf-8")


def main(argv: list[str]) -> int:
    """Each profile in its own process, PARALLEL at a time (installs wait on disk and network as much as on the
    CPU); their logs are printed in order when all are done."""
    WORK.mkdir(exist_ok=True)
    lock, keep = "--lock" in argv, "--keep" in argv
    if "--one" in argv:  # a child: one profile, its result on the last line
        name = argv[argv.index("--one") + 1]
        try:
            print("PASS " + profile(name, lock=lock))
            return 0
        except (ProfileFailed, subprocess.SubprocessError, OSError) as e:
            print(f"FAIL {name}: {e}")
            return 1
        finally:
            if not keep:
                remove_environments(name)
    names = ([a for a in argv if a not in ("--lock", "--keep")]
             or [n for n, spec in PROFILES.items() if spec.get("default", True)])
    unknown = [n for n in names if n not in PROFILES]
    if unknown:
        print(f"unknown profile(s) {unknown}: choose from {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    forget_smoke_passes()
    t0 = time.perf_counter()
    children: dict[str, subprocess.Popen] = {}
    for name in names:
        while sum(proc.poll() is None for proc in children.values()) >= PARALLEL:
            time.sleep(1)
        with open(WORK / f"{name}.log", "w") as log:
            flags = [f for f, on in (("--lock", lock), ("--keep", keep)) if on]
            cmd = [sys.executable, __file__, "--one", name, *flags]
            children[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    results = []
    for name, proc in children.items():
        proc.wait()
        text = (WORK / f"{name}.log").read_text()
        print(text, flush=True)
        last = text.strip().splitlines()[-1] if text.strip() else f"FAIL {name}: no output"
        results.append(last if last.startswith(("PASS", "FAIL")) else f"FAIL {name}: exit {proc.returncode}")
    print(f"\nHost profiles ({time.perf_counter() - t0:.0f}s):\n  " + "\n  ".join(r[:2000] for r in results))
    return 0 if all(r.startswith("PASS") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
