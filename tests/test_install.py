"""install.py: what it installs, what it never touches, and the pack's own environment.

The real thing, in fresh environments with sd-webui's, Forge's and ComfyUI's pins, is `.ci/hosts.py`
(run by CI); these tests pin down the decisions and run in the test environment itself."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT


@pytest.fixture
def install(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("pack_install", REPO_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "launch", None)
    monkeypatch.setattr(module, "SMOKE_STAMP", tmp_path / "smoke-stamp.json")
    return module


@pytest.fixture
def proven(install, monkeypatch):
    """main() without the smoke run (tests of what gets installed where): every Python counts as proven."""
    monkeypatch.setattr(install, "prove", lambda python, versions: None)
    return install


class FakeLaunch:
    """sd-webui's `launch` as extensions see it; records each pip command and the constraints it named."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def is_installed(self, name):
        return True

    def run_pip(self, command, desc=None):
        constraints = re.search(r"-c (\S+)", command)
        pins = open(constraints.group(1)).read().split() if constraints else []
        self.calls.append((command, pins))
        if self.fail:
            raise RuntimeError(f"Couldn't install {desc}")


def run(cmd, env=None, timeout=300):
    return subprocess.run(cmd, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_versions_compare_by_release_numbers(install):
    assert install.parse_requirement("numpy>=1.25.2,<3") == ("numpy", [(">=", "1.25.2"), ("<", "3")])
    assert install.parse_requirement("Pillow_SIMD >= 9.5 ; python_version>'3'")[0] == "pillow-simd"
    assert install.satisfies("1.26", [(">=", "1.25.2")]) and install.satisfies("1.25.2", [(">=", "1.25.2")])
    assert not install.satisfies("1.25.1", [(">=", "1.25.2")])
    assert install.satisfies("2.13.0+cpu", [(">=", "2.13")]) and not install.satisfies("3.9.0", [("<", "3.9")])
    assert install.satisfies("4.43.4", [(">=", "4.43.4"), ("!=", "4.44.0")])


def test_plan_tells_missing_from_conflicting(install):
    have = {"numpy": "1.26.2", "transformers": "4.30.2", "pillow": "9.5.0"}
    missing, conflicts = install.plan(["numpy>=1.25.2", "transformers>=4.43.4", "peft>=0.15", "pillow>=9.5"], have)
    assert missing == ["peft>=0.15"]
    assert conflicts == ["transformers 4.30.2 is installed; this pack needs transformers>=4.43.4"]


def test_requirements_never_name_host_owned_packages(install):
    names = {install.parse_requirement(r)[0] for r in install.requirements()}
    assert not names & {"torch", "torchvision", "torchaudio", "xformers"}
    assert {"diffusers", "peft", "transformers", "spacy"} <= names


def _floors(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().strip('",')
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(>=|==)\s*([\w.]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
    return out


def test_requirements_txt_installs_nothing_unconstrained():
    """ComfyUI-Manager pip-installs requirements.txt with no constraints: it must name no package."""
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    assert [ln for ln in lines if ln] == []


def test_floors_agree_in_pyproject_requirements_and_the_ci_floor_leg():
    """One set of lower bounds, and the CI leg that installs exactly those is the proof of them."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    deps = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))].splitlines()[1:]
    pyproject = {k: v for k, v in _floors(deps).items() if k != "torch"}
    requirements = _floors((REPO_ROOT / "pack-requirements.txt").read_text().splitlines())
    ci_floors = _floors((REPO_ROOT / ".ci" / "floors.txt").read_text().splitlines())
    assert pyproject == requirements
    assert {k: ci_floors.get(k) for k in pyproject} == pyproject


def test_install_py_is_idempotent_and_fast():
    first = run([sys.executable, "install.py"])
    assert first.returncode == 0, first.stderr
    freeze_before = run([sys.executable, "-m", "pip", "freeze"]).stdout
    t0 = time.perf_counter()
    second = run([sys.executable, "install.py"])
    elapsed = time.perf_counter() - t0
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert elapsed < 10, f"install.py took {elapsed:.1f}s with everything installed"
    assert run([sys.executable, "-m", "pip", "freeze"]).stdout == freeze_before


def test_missing_packages_go_through_sd_webui_pip_with_every_host_version_held(proven, monkeypatch, capsys):
    real = proven.installed_versions()
    host = {k: v for k, v in real.items() if k != "tqdm"}
    fake = FakeLaunch()
    monkeypatch.setattr(proven, "launch", fake)
    monkeypatch.setattr(proven, "installed_versions", lambda python=None: real if fake.calls else host)
    assert proven.main() == 0
    [(command, pins)] = fake.calls
    assert command.startswith("install -c ") and re.search(r"\btqdm>=", command)
    assert "torch" not in re.sub(r"-c \S+", "", command)
    assert f"numpy=={real['numpy']}" in pins and f"torch=={real['torch']}" in pins and "sd-adverb-lora" not in " ".join(pins)
    assert f"installed tqdm=={real['tqdm']}" in capsys.readouterr().out


def test_a_host_package_that_moves_anyway_is_reported(proven, monkeypatch, capsys):
    real = proven.installed_versions()
    host = {**{k: v for k, v in real.items() if k != "tqdm"}, "numpy": "1.26.2"}
    fake = FakeLaunch()
    monkeypatch.setattr(proven, "launch", fake)
    monkeypatch.setattr(proven, "installed_versions", lambda python=None: real if fake.calls else host)
    assert proven.main() == 1
    err = capsys.readouterr().err
    assert f"numpy 1.26.2 -> {real['numpy']}" in err and "Traceback" not in err


def test_conflicts_change_nothing_and_say_what_is_unavailable(proven, monkeypatch, capsys):
    host = {**proven.installed_versions(), "transformers": "4.30.2", "accelerate": "0.21.0"}
    fake = FakeLaunch()
    monkeypatch.setattr(proven, "launch", fake)
    monkeypatch.setattr(proven, "installed_versions", lambda python=None: host)
    monkeypatch.setenv("SD_ADVERB_LORA_NO_ENV", "1")
    assert proven.main() == 0
    out = capsys.readouterr()
    assert fake.calls == []
    assert "transformers 4.30.2 is installed; this pack needs transformers>=" in out.out
    assert "accelerate 0.21.0 is installed" in out.out
    assert "unavailable in this Python" in out.err and "install.py" in out.err


def test_pip_failure_is_a_message_not_a_traceback(proven, monkeypatch, capsys):
    host = {k: v for k, v in proven.installed_versions().items() if k != "peft"}
    monkeypatch.setattr(proven, "launch", FakeLaunch(fail=True))
    monkeypatch.setattr(proven, "installed_versions", lambda python=None: host)
    assert proven.main() == 1
    err = capsys.readouterr().err
    assert "install failed" in err and "nothing in this Python was changed" in err and "Traceback" not in err


def test_pack_env_reuses_the_host_packages_and_runs_the_trainer(install, monkeypatch, tmp_path):
    """With everything already in the host, the pack's environment needs no pip call and imports the host's torch."""
    monkeypatch.setattr(install, "PACK_ENV", tmp_path / "env")
    python, added = install.build_pack_env(install.installed_versions())
    assert added == []
    code = "import torch, diffusers, sys; print(torch.__file__); print(sys.prefix)"
    torch_file, prefix = run([python, "-c", code]).stdout.split()
    import torch

    assert torch_file == torch.__file__ and prefix == str(tmp_path / "env")
    proc = run([python, "-m", "trainer", "--help"])
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


# ----------------------------------------------------------------- fitting to the host's torch, proving it

def test_caps_follow_each_librarys_own_torch_checks(install):
    """sd-webui 1.10's torch 2.1.2 (the registry's CUDA build says 2.1.2+cu121): the releases issue 21 hit are held off."""
    assert install.torch_caps("2.1.2+cu121") == {
        "transformers": ("4.56.0", "2.2"), "diffusers": ("0.36.0", "2.3"), "accelerate": ("1.16.0", "2.6")}
    assert install.torch_caps("2.3.1") == {
        "transformers": ("5.1.0", "2.4"), "diffusers": ("0.39.0", "2.6"), "accelerate": ("1.16.0", "2.6")}
    assert install.torch_caps("2.4.1") == {
        "transformers": ("5.15.0", "2.5"), "diffusers": ("0.37.0", "2.5"), "accelerate": ("1.16.0", "2.6")}
    assert install.torch_caps("2.5.1")["diffusers"] == ("0.39.0", "2.6")
    assert install.torch_caps("2.6.0") == {} and install.torch_caps("2.13.0+cpu") == {}


def test_diffusers_0_37_is_held_off_torch_2_4_only(install):
    """The comfyui-torch24 profile: diffusers 0.37/0.38 register a custom op with string annotations that torch
    2.4's infer_schema rejects at import. Older torch takes diffusers' no-op path, 2.5 reads the strings."""
    assert install.fit_to_torch(["diffusers>=0.34.0"], "2.4.1+cu121") == ["diffusers>=0.34.0,<0.37.0"]
    assert install.fit_to_torch(["diffusers>=0.34.0"], "2.4.0") == ["diffusers>=0.34.0,<0.37.0"]
    assert install.fit_to_torch(["diffusers>=0.34.0"], "2.3.1") == ["diffusers>=0.34.0,<0.39.0"]
    assert install.fit_to_torch(["diffusers>=0.34.0"], "2.5.1") == ["diffusers>=0.34.0,<0.39.0"]
    have = {"torch": "2.4.1", "diffusers": "0.38.0"}
    assert install.plan(install.fit_to_torch(["diffusers>=0.34.0"], have["torch"]), have) == (
        [], ["diffusers 0.38.0 is installed; this pack needs diffusers>=0.34.0,<0.37.0"])


def test_each_table_row_needs_a_newer_torch_than_the_one_before(install):
    """The caps take the first row whose torch is too new: that is only right if rows rise in both columns."""
    key = install._version_key
    for name, rows in install.TORCH_NEEDS.items():
        assert [key(r) for r, *_ in rows] == sorted(key(r) for r, *_ in rows), name
        assert all(key(a) < key(b) for (_, a, *_), (_, b, *_) in zip(rows, rows[1:])), name
        # a band row (release, torch, since): the band lies below the torch it names
        assert all(len(row) == 2 or key(row[2]) < key(row[1]) for row in rows), name


def test_requirements_fitted_to_torch_and_what_they_then_accept(install):
    fitted = install.fit_to_torch(["diffusers>=0.34.0", "transformers>=4.43.4", "numpy>=1.25.2"], "2.1.2")
    assert fitted == ["diffusers>=0.34.0,<0.36.0", "transformers>=4.43.4,<4.56.0", "numpy>=1.25.2"]
    spec = install.parse_requirement(fitted[1])[1]
    assert install.satisfies("4.55.4", spec) and not install.satisfies("5.25.0", spec)
    assert install.fit_to_torch(["diffusers>=0.34.0"], "2.13.0") == ["diffusers>=0.34.0"]


def test_a_torch_too_old_for_the_pack_is_a_clear_error(install):
    with pytest.raises(install.InstallError, match=r"torch 1\.12\.1 is too old.*peft 0\.15\.0.*torch >= 1\.13"):
        install.fit_to_torch(["peft>=0.15.0"], "1.12.1")


def test_a_host_library_too_new_for_its_torch_is_a_conflict(install):
    """Issue 21: transformers 5.25 and diffusers 0.42 beside torch 2.1.2 must not count as 'installed'."""
    have = {"torch": "2.1.2", "transformers": "5.25.0", "diffusers": "0.42.1", "peft": "0.21.2"}
    reqs = install.fit_to_torch(["transformers>=4.43.4", "diffusers>=0.34.0", "peft>=0.15.0"], have["torch"])
    missing, conflicts = install.plan(reqs, have)
    assert missing == []
    assert conflicts == ["transformers 5.25.0 is installed; this pack needs transformers>=4.43.4,<4.56.0",
                         "diffusers 0.42.1 is installed; this pack needs diffusers>=0.34.0,<0.36.0"]


def test_the_step_down_set_is_the_ci_floor_leg(install):
    ci_floors = _floors((REPO_ROOT / ".ci" / "floors.txt").read_text().splitlines())
    step_down = _floors(install.FLOOR_SET)
    assert set(step_down) == {"diffusers", "transformers", "peft", "accelerate", "huggingface-hub"}
    assert step_down == {k: ci_floors[k] for k in step_down}


def test_the_smoke_trains_a_lora_step_in_this_python(install):
    """The real smoke: trainer's tiny UNet + PEFT LoRA, one optimizer step, in the test environment."""
    assert install.smoke(sys.executable) is None
    assert install.prove(sys.executable, install.installed_versions()) is None
    assert sys.executable in install._stamps()


def test_a_proven_environment_is_not_smoked_again_but_a_changed_one_is(install, monkeypatch):
    versions = {"torch": "2.1.2", "diffusers": "0.35.2", "transformers": "4.55.4", "numpy": "1.26.2"}
    runs = []
    monkeypatch.setattr(install, "smoke", lambda python: runs.append(python))
    assert install.prove("/host/python", versions) is None and runs == ["/host/python"]
    assert install.prove("/host/python", {**versions, "numpy": "1.26.4"}) is None and len(runs) == 1  # not a smoke package
    assert install.prove("/host/python", {**versions, "diffusers": "0.34.0"}) is None and len(runs) == 2
    assert install.prove("/other/python", versions) is None and len(runs) == 3


SD_WEBUI_HOST = {"torch": "2.1.2", "torchvision": "0.16.2", "transformers": "4.30.2", "accelerate": "0.21.0",
                 "numpy": "1.26.2"}


def _step_down_setup(install, monkeypatch, tmp_path, floor_set_helps, host=SD_WEBUI_HOST):
    """sd-webui 1.10's host; the pack's environment says it holds the newest libraries until the floor set is
    pip-installed. The smoke is a real subprocess that fails as issue 21's did unless the floor set is in."""
    floor_in = tmp_path / "floor-set-installed"
    code = (f"import pathlib, sys\nif not pathlib.Path({str(floor_in)!r}).exists():\n"
            "    sys.exit(\"AttributeError: module 'torch' has no attribute 'accelerator'\")\nprint('smoke passed')\n")
    monkeypatch.setattr(install, "SMOKE_CODE", code)
    monkeypatch.setattr(install, "PACK_ENV", tmp_path / "env")
    newest = {**host, "diffusers": "0.35.2", "transformers": "4.55.4", "peft": "0.21.2",
              "accelerate": "1.15.0", "huggingface-hub": "0.36.2"}
    floors = {**newest, **_floors(install.FLOOR_SET)}
    monkeypatch.setattr(install, "installed_versions",
                        lambda python=None: host if python is None else floors if floor_in.exists() else newest)
    monkeypatch.setattr(install, "build_pack_env", lambda have, reqs=None: (sys.executable, []))
    monkeypatch.setattr(install, "spacy_model_installed", lambda python=None: True)
    calls = []

    def pip_install(args, what, python=None):
        pins = open(args[args.index("-c") + 1]).read().split() if "-c" in args else []
        calls.append((args, pins, python))
        if floor_set_helps:
            floor_in.write_text("")

    monkeypatch.setattr(install, "pip_install", pip_install)
    return calls


def test_a_failing_smoke_steps_down_to_the_floor_set_and_says_why(install, monkeypatch, tmp_path, capsys):
    calls = _step_down_setup(install, monkeypatch, tmp_path, floor_set_helps=True)
    assert install.main() == 0
    [(args, pins, python)] = calls
    assert python == sys.executable and pins == ["torch==2.1.2", "torchvision==0.16.2"]
    assert [a for a in args if "==" in a] == list(install.FLOOR_SET)
    out = capsys.readouterr().out
    assert "the smoke run failed" in out and "module 'torch' has no attribute 'accelerator'" in out
    assert "stepping down to the versions CI proves" in out
    assert "diffusers 0.35.2 -> 0.34.0" in out and "transformers 4.55.4 -> 4.43.4" in out
    assert "smoke run (tiny SD1.5 pipeline + PEFT LoRA, one training step) passed" in out
    assert install._stamps()[sys.executable]["diffusers"] == "0.34.0"


def test_a_smoke_that_fails_on_the_floor_set_too_is_an_error_not_a_pass(install, monkeypatch, tmp_path, capsys):
    _step_down_setup(install, monkeypatch, tmp_path, floor_set_helps=False)
    assert install.main() == 1
    err = capsys.readouterr().err
    assert "the smoke run fails with the floor set too" in err and "accelerator" in err and "Traceback" not in err
    assert install._stamps() == {}


def test_a_host_whose_own_libraries_fail_the_smoke_keeps_them_and_gets_the_floor_set_beside(install, monkeypatch,
                                                                                           tmp_path, capsys):
    """A ComfyUI whose packages meet every requirement yet do not train: nothing in it changes (no pip call into
    the host), the pack's own environment gets the floor set, and the output says the nodes cannot train here."""
    host = {"torch": "2.4.1", "diffusers": "0.36.0", "transformers": "4.46.1", "peft": "0.17.1", "accelerate": "1.4.0",
            "huggingface-hub": "0.30.0", "safetensors": "0.4.5", "spacy": "3.8.2", "numpy": "1.26.4",
            "pillow": "10.0.0", "pyyaml": "6.0.1", "tqdm": "4.66.1", "tensorboard": "2.14.0", "matplotlib": "3.8.0"}
    calls = _step_down_setup(install, monkeypatch, tmp_path, floor_set_helps=True, host=host)
    monkeypatch.setattr(install, "install_into_host", lambda *a: pytest.fail("nothing may be installed into the host"))
    assert install.main() == 0
    [(args, pins, python)] = calls
    assert python is not None and pins == ["torch==2.4.1"] and [a for a in args if "==" in a] == list(install.FLOOR_SET)
    out = capsys.readouterr().out
    assert "the smoke run failed in this Python: AttributeError: module 'torch' has no attribute 'accelerator'" in out
    assert "this Python's nodes cannot train" in out and str(install.PACK_ENV) in out
