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
def install(monkeypatch):
    spec = importlib.util.spec_from_file_location("pack_install", REPO_ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "launch", None)
    return module


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


def test_missing_packages_go_through_sd_webui_pip_with_every_host_version_held(install, monkeypatch, capsys):
    real = install.installed_versions()
    host = {k: v for k, v in real.items() if k != "tqdm"}
    fake = FakeLaunch()
    monkeypatch.setattr(install, "launch", fake)
    monkeypatch.setattr(install, "installed_versions", lambda python=None: real if fake.calls else host)
    assert install.main() == 0
    [(command, pins)] = fake.calls
    assert command.startswith("install -c ") and re.search(r"\btqdm>=", command)
    assert "torch" not in re.sub(r"-c \S+", "", command)
    assert f"numpy=={real['numpy']}" in pins and f"torch=={real['torch']}" in pins and "sd-adverb-lora" not in " ".join(pins)
    assert f"installed tqdm=={real['tqdm']}" in capsys.readouterr().out


def test_a_host_package_that_moves_anyway_is_reported(install, monkeypatch, capsys):
    real = install.installed_versions()
    host = {**{k: v for k, v in real.items() if k != "tqdm"}, "numpy": "1.26.2"}
    fake = FakeLaunch()
    monkeypatch.setattr(install, "launch", fake)
    monkeypatch.setattr(install, "installed_versions", lambda python=None: real if fake.calls else host)
    assert install.main() == 1
    err = capsys.readouterr().err
    assert f"numpy 1.26.2 -> {real['numpy']}" in err and "Traceback" not in err


def test_conflicts_change_nothing_and_say_what_is_unavailable(install, monkeypatch, capsys):
    host = {**install.installed_versions(), "transformers": "4.30.2", "accelerate": "0.21.0"}
    fake = FakeLaunch()
    monkeypatch.setattr(install, "launch", fake)
    monkeypatch.setattr(install, "installed_versions", lambda python=None: host)
    monkeypatch.setenv("SD_ADVERB_LORA_NO_ENV", "1")
    assert install.main() == 0
    out = capsys.readouterr()
    assert fake.calls == []
    assert "transformers 4.30.2 is installed; this pack needs transformers>=" in out.out
    assert "accelerate 0.21.0 is installed" in out.out
    assert "unavailable in this Python" in out.err and "install.py" in out.err


def test_pip_failure_is_a_message_not_a_traceback(install, monkeypatch, capsys):
    host = {k: v for k, v in install.installed_versions().items() if k != "peft"}
    monkeypatch.setattr(install, "launch", FakeLaunch(fail=True))
    monkeypatch.setattr(install, "installed_versions", lambda python=None: host)
    assert install.main() == 1
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
