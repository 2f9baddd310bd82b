"""The pack inside a real AUTOMATIC1111 sd-webui 1.10.1 on CPU: the tab, a LoRA it trains, that LoRA in txt2img.

Runs only when SDWEBUI_PATH points to an sd-webui checkout; sd-webui is started with SDWEBUI_PYTHON
(default `$SDWEBUI_PATH/venv/bin/python`, where sd-webui's own scripts put it) on 127.0.0.1, a free
port, `--use-cpu all --precision full --no-half --api --loglevel DEBUG --skip-prepare-environment`
(no pip, no git, no install.py), and a temporary `--data-dir` whose `extensions/` links to this repo,
whose `models/Stable-diffusion/` gets a random-weight SD1.5 single file in sd-webui's (ldm) layout and
whose Hugging Face cache gets `openai/clip-vit-large-patch14`'s tokenizer + config built from the pack's
own files (tools/sdwebui_offline.py). The tab's trainer (SD_ADVERB_LORA_ENV) runs by default in the Python
running these tests: install.py's environment is CI's host profiles' subject (.ci/hosts.py), and building it
costs minutes. SDWEBUI_TRAINER_ENV=install runs install.py first as sd-webui does at start (sd-webui's Python,
from the extension folder) into .cache/sdwebui_e2e/trainer-venv, and the tab trains there, on sd-webui's own
torch; SDWEBUI_TRAINER_ENV=<folder> uses that environment. 4-7 minutes on 2 busy CPU cores; the first run
also writes the checkpoint (about 2 minutes, then cached in .cache/sdwebui_e2e/, git-ignored).

Setting up that sd-webui (what the project used: v1.10.1 = 82a973c0, Python 3.11, CPU only):

    W=.sdwebui/stable-diffusion-webui                         # .sdwebui/ is git-ignored
    git clone -b v1.10.1 <AUTOMATIC1111/stable-diffusion-webui> $W
    # the helper repositories modules/launch_utils.py names, at its commit hashes:
    #   repositories/stable-diffusion-webui-assets 6f7db241   repositories/stable-diffusion-stability-ai cf1d67a6
    #   repositories/generative-models 45c443b3               repositories/k-diffusion ab527a9a
    #   repositories/BLIP 48211a15
    python3.11 -m venv $W/venv && P=$W/venv/bin/pip
    $P install torch==2.1.2 torchvision==0.16.2               # sd-webui 1.10.1's torch (CUDA build, runs on CPU)
    printf 'torch==2.1.2\ntorchvision==0.16.2\n' > /tmp/c.txt
    $P install -c /tmp/c.txt -r $W/requirements_versions.txt openai-clip==1.0.1

  openai-clip 1.0.1 is openai/CLIP from the package registry: sd-webui installs CLIP from a GitHub zip
  (CLIP_PACKAGE), which the skipped environment preparation would fetch; k-diffusion imports `clip`.

Run: SDWEBUI_PATH=$PWD/.sdwebui/stable-diffusion-webui .venv/bin/python -m pytest tests/test_sdwebui_e2e.py -v
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SDWEBUI_PATH = os.environ.get("SDWEBUI_PATH")
pytestmark = pytest.mark.skipif(not SDWEBUI_PATH, reason="SDWEBUI_PATH is not set (an sd-webui 1.10.1 checkout to "
                                                         "test in; see this module's docstring)")

PACK_DIR = "sd_adverb_lora"
CKPT = "random_sd15.safetensors"
# The random checkpoint is the same every time (seed 0): written once, then reused (.cache/ is git-ignored).
CKPT_CACHE = REPO_ROOT / ".cache" / "sdwebui_e2e" / CKPT
LORA = "e2e_tab_lora"
TAB = "Adverb LoRA"
START = "Start / resume"
# What sd-webui's Lora extension (extensions-builtin/Lora/networks.py) logs for a LoRA it cannot use:
# a name it cannot find (INFO), keys that match no layer and layers it cannot apply (DEBUG).
LORA_PROBLEMS = ("Couldn't find Lora", "Couldn't find network", "Lora not found", "didn't match keys", "couldn't find supported operation",
                 "Failed to load network")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebUI:
    """An sd-webui process on 127.0.0.1 with its own data directory; its HTTP API and gradio's."""

    def __init__(self, data: Path, hf_home: Path, python: str, webui_path: Path, trainer_env: str):
        self.data, self.port, self.trainer_env = data, _free_port(), trainer_env
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data / "sdwebui.log"
        env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONUNBUFFERED": "1", "SD_ADVERB_LORA_ENV": trainer_env, "PYTHONPATH": ""}
        env.pop("VIRTUAL_ENV", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [python, "launch.py", "--skip-prepare-environment", "--skip-torch-cuda-test", "--no-download-sd-model",
             "--use-cpu", "all", "--precision", "full", "--no-half", "--api", "--loglevel", "DEBUG",
             "--port", str(self.port), "--data-dir", str(data)],
            cwd=webui_path, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 300) -> None:
        """Until the API answers and the model sd-webui loads at start is loaded."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sd-webui exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.get("/sdapi/v1/options").get("sd_model_checkpoint"):
                    if "Model loaded in" in self.log():
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise TimeoutError(f"sd-webui was not ready within {timeout} s:\n{self.log()[-4000:]}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None, timeout: float = 600):
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"POST {path}: {e.code} {e.read().decode(errors='replace')[-3000:]}") from None
        return json.loads(data) if data else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


class Gradio:
    """The page's gradio app as the browser sees it: /config's components, events called by /run/predict."""

    def __init__(self, webui: WebUI):
        self.webui = webui
        self.config = webui.get("/config")
        self.by_id = {c["id"]: c for c in self.config["components"]}

    def subtree(self, component_id: int) -> set[int]:
        """Ids of a layout node and everything inside it."""
        def find(node):
            if node["id"] == component_id:
                return node
            return next((f for f in map(find, node.get("children", [])) if f), None)

        def ids(node):
            yield node["id"]
            for child in node.get("children", []):
                yield from ids(child)

        node = find(self.config["layout"])
        assert node is not None, f"component {component_id} is not in the page layout"
        return set(ids(node))

    def tab(self, label: str) -> int:
        found = [c["id"] for c in self.config["components"]
                 if c["type"] == "tabitem" and c["props"].get("label") == label]
        assert len(found) == 1, f"{len(found)} tabs labelled {label!r} in /config"
        return found[0]

    def event(self, button: str, inside: set[int]) -> int:
        """fn_index of the click event of the button with this text inside `inside`."""
        for i, dep in enumerate(self.config["dependencies"]):
            for t in dep["targets"]:
                c = self.by_id.get(t, {})
                if t in inside and c.get("type") == "button" and c["props"].get("value") == button:
                    return i
        raise AssertionError(f"no click event for a {button!r} button in the tab")

    def inputs(self, fn_index: int, **by_label) -> list:
        """The event's inputs at their defaults, those whose label starts with a key of `by_label` replaced."""
        values, used = [], set()
        for cid in self.config["dependencies"][fn_index]["inputs"]:
            props = self.by_id[cid]["props"]
            value = props.get("value")
            for prefix, v in by_label.items():
                if (props.get("label") or "").startswith(prefix):
                    value = v
                    used.add(prefix)
            values.append(value)
        assert used == set(by_label), f"no input labelled {sorted(set(by_label) - used)}"
        return values

    def call(self, fn_index: int, data: list, timeout: float = 900, session: str = "") -> list[list]:
        """Every output a (generator) event yields, as the page gets them, until it ends. `session`: go on with
        an event that session started (gradio keeps its generator)."""
        session, outputs = session or uuid.uuid4().hex, []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.webui.post("/run/predict", {"fn_index": fn_index, "data": data, "session_hash": session})
            if r.get("data") is not None and any(v is not None for v in r["data"]):
                outputs.append(r["data"])
            if not r.get("is_generating"):
                return outputs
        raise TimeoutError(f"event {fn_index} still running after {timeout} s; last output {outputs[-1:]}")


def _run(code: str, *args: str, timeout: float = 900) -> None:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _trainer_env(webui_python: str) -> str:
    """SD_ADVERB_LORA_ENV for sd-webui: see SDWEBUI_TRAINER_ENV in the module docstring."""
    chosen = os.environ.get("SDWEBUI_TRAINER_ENV", "")
    if chosen != "install":
        return chosen or sys.prefix
    env_dir = REPO_ROOT / ".cache" / "sdwebui_e2e" / "trainer-venv"
    env = {**os.environ, "SD_ADVERB_LORA_ENV": str(env_dir), "PYTHONPATH": ""}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([webui_python, "install.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"install.py with sd-webui's Python failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    assert (env_dir / "bin" / "python").is_file(), f"install.py built no environment in {env_dir}:\n{proc.stdout[-3000:]}"
    torch_of = {py: subprocess.run([py, "-c", "import torch; print(torch.__version__, torch.__file__)"],
                                   capture_output=True, text=True, env=env).stdout.strip()
                for py in (webui_python, str(env_dir / "bin" / "python"))}
    assert len(set(torch_of.values())) == 1, f"the trainer's environment has another torch than sd-webui: {torch_of}"
    return str(env_dir)


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    webui_path = Path(SDWEBUI_PATH).resolve()
    python = os.environ.get("SDWEBUI_PYTHON") or str(webui_path / "venv" / "bin" / "python")
    if not (webui_path / "launch.py").is_file() or not (webui_path / "modules" / "launch_utils.py").is_file():
        pytest.fail(f"SDWEBUI_PATH={webui_path}: not an sd-webui checkout (no launch.py, modules/launch_utils.py)")
    if not Path(python).is_file():
        pytest.fail(f"SDWEBUI_PYTHON={python}: no such interpreter; set SDWEBUI_PYTHON to sd-webui's python")
    data, hf_home = tmp_path_factory.mktemp("sdwebui_data"), tmp_path_factory.mktemp("hf_home")
    for d in ("extensions", "models/Stable-diffusion", "models/Lora"):
        (data / d).mkdir(parents=True)
    (data / "extensions" / PACK_DIR).symlink_to(REPO_ROOT, target_is_directory=True)
    CKPT_CACHE.parent.mkdir(parents=True, exist_ok=True)
    if not CKPT_CACHE.is_file():  # in a child process: the ~2 GB model's memory goes back before sd-webui starts
        _run("import sys; sys.path.insert(0, 'tools'); import sdwebui_offline as o; o.write_random_sd15(sys.argv[1])",
             str(CKPT_CACHE))
    (data / "models" / "Stable-diffusion" / CKPT).symlink_to(CKPT_CACHE)
    _run("import sys; sys.path.insert(0, 'tools'); import sdwebui_offline as o; o.build_clip_cache(sys.argv[1])",
         str(hf_home))
    server = WebUI(data, hf_home, python, webui_path, _trainer_env(python))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def gradio(webui):
    return Gradio(webui)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    from trainer.captions.sample_dataset import make_sample_coco

    return make_sample_coco(tmp_path_factory.mktemp("coco"), n_images=2)


def _train_settings(gradio: Gradio, fn: int, base_model: str, name: str, coco: Path, steps: int) -> list:
    return gradio.inputs(fn, **{"Base model": base_model, "Output name": name, "COCO root": str(coco),
                                "Steps": steps, "Resolution": 64, "Images (0": 2, "Gradient accumulation": 1,
                                "Learning rate": 1e-3, "Precision": "fp32", "Save every": 100})


@pytest.fixture(scope="module")
def tab_lora(webui, gradio, coco):
    """A 2-step LoRA trained by the tab's Start on sd-webui's loaded checkpoint (its title as sd-webui has it now)."""
    train = gradio.subtree(gradio.tab(TAB))
    fn = gradio.event(START, train)
    title = webui.get("/sdapi/v1/options")["sd_model_checkpoint"]
    outputs = gradio.call(fn, _train_settings(gradio, fn, title, LORA, coco, steps=2))
    statuses = [o[0] for o in outputs if o and o[0]]
    lora = webui.data / "models" / "Lora" / f"{LORA}.safetensors"
    assert lora.is_file(), f"Start with base model {title!r}: no {lora.name} in models/Lora; the tab said:\n" + \
        "\n".join(statuses[-3:])
    return lora, statuses


def test_tab_is_in_the_page_and_the_extension_loaded_cleanly(webui, gradio):
    train = gradio.subtree(gradio.tab(TAB))
    labels = {gradio.by_id[i]["props"].get("label") for i in train}
    assert {"Captions", "Train", "Convert"} <= labels
    base = next(gradio.by_id[i] for i in train if (gradio.by_id[i]["props"].get("label") or "").startswith("Base model"))
    assert any(CKPT in str(c) for c in base["props"]["choices"]), base["props"]["choices"]
    banner = [str(gradio.by_id[i]["props"].get("value")) for i in train if gradio.by_id[i]["type"] == "markdown"]
    python = str(Path(webui.trainer_env) / "bin" / "python")
    assert any(b.startswith(f"Trainer: `{python}`") for b in banner), banner  # not "Trainer unavailable"
    log = webui.log()
    # (sd-webui's "Failed reading extension data from Git repository (sd_adverb_lora)" is this test's link to a
    # checkout without an `origin` remote, not the pack: a clone from Extensions has one.)
    assert f"extensions/{PACK_DIR}" not in "\n".join(
        line for line in log.splitlines() if "Error" in line or "Traceback" in line), log[-4000:]
    assert "Error loading script" not in log and "adverb_lora.py" not in log, log[-4000:]


def test_tab_start_trains_a_lora_into_models_lora(tab_lora):
    from convert import load_any

    lora, statuses = tab_lora
    assert not [s for s in statuses if "Error" in s], statuses
    loaded = load_any(lora)
    assert loaded.format == "webui" and loaded.modules
    assert loaded.metadata.get("ss_base_model_version") == "sd_v1"


def test_start_accepts_the_checkpoint_name_a_first_start_shows(webui, gradio, coco):
    """On a first start the dropdown offers `name.safetensors`; after sd-webui has hashed the file its title is
    `name.safetensors [hash]`. The name the page still shows must start training, not fail as missing."""
    title = webui.get("/sdapi/v1/options")["sd_model_checkpoint"]
    assert title.startswith(CKPT + " [") and title != CKPT, f"sd-webui has not hashed {CKPT}: title {title!r}"
    train = gradio.subtree(gradio.tab(TAB))
    fn, cancel = gradio.event(START, train), gradio.event("Cancel", train)
    session = uuid.uuid4().hex
    data = _train_settings(gradio, fn, CKPT, "e2e_first_start_name", coco, steps=200)
    first = webui.post("/run/predict", {"fn_index": fn, "data": data, "session_hash": session})["data"][0]
    if "Error" not in (first or ""):  # it started: stop it, and follow it until the trainer has ended
        gradio.call(cancel, [])
        gradio.call(fn, data, session=session)
    assert "Error" not in (first or ""), f"Start with base model {CKPT!r} (title {title!r}): {first}"


def test_loras_endpoint_lists_the_tab_lora(webui, tab_lora):
    webui.post("/sdapi/v1/refresh-loras")
    listed = {entry["name"]: entry for entry in webui.get("/sdapi/v1/loras")}
    assert LORA in listed, sorted(listed)
    assert Path(listed[LORA]["path"]).resolve() == tab_lora[0].resolve()


def _txt2img(webui: WebUI, prompt: str) -> tuple[object, str, str]:
    """(the image as an array, its info (infotext, comments …) as JSON text, what sd-webui logged making it)."""
    import numpy as np
    from PIL import Image

    before = len(webui.log())
    r = webui.post("/sdapi/v1/txt2img", {"prompt": prompt, "steps": 1, "width": 64, "height": 64, "seed": 1,
                                         "sampler_name": "Euler", "cfg_scale": 7})
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(r["images"][0]))).convert("RGB"), dtype=np.float32)
    return image, r["info"], webui.log()[before:]


def test_txt2img_applies_the_lora_with_no_lora_errors(webui, tab_lora):
    with_lora, info, log = _txt2img(webui, f"a cat sitting <lora:{LORA}:1>")
    assert not [p for p in LORA_PROBLEMS if p in log or p in info], \
        [line for line in (log + info).splitlines() if any(p in line for p in LORA_PROBLEMS)]
    assert not [line for line in log.splitlines() if f"Network {LORA} layer" in line]
    infotext = json.loads(info)["infotexts"][0]
    assert f'Lora hashes: "{LORA}: ' in infotext, infotext
    without, _, _ = _txt2img(webui, f"a cat sitting <lora:{LORA}:0>")
    assert with_lora.shape == (64, 64, 3)
    assert abs(with_lora - without).mean() > 0, "the LoRA at weight 1 changed no pixel"


def test_lora_errors_show_in_this_log(webui):
    """The check above can fail: a LoRA for another model (SD2's 1024-wide cross-attention) logs layer errors."""
    import torch
    from safetensors.torch import save_file

    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{k}.lora_down.weight": torch.randn(4, 1024), f"{k}.lora_up.weight": torch.randn(320, 4),
               f"{k}.alpha": torch.tensor(4.0)}, str(webui.data / "models" / "Lora" / "e2e_wrong_model.safetensors"))
    webui.post("/sdapi/v1/refresh-loras")
    _, _, log = _txt2img(webui, "a cat <lora:e2e_wrong_model:1> <lora:e2e_no_such_lora:1>")
    assert "Network e2e_wrong_model layer diffusion_model_input_blocks_1_1_transformer_blocks_0_attn2_to_k" in log, \
        log[-3000:]
    assert "Couldn't find network with name e2e_no_such_lora" in log, log[-3000:]
