"""The foundation contract: tokenizer, tiny models, ComfyUI import, CLIs and the wheel (install.py: test_install.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def run(cmd, cwd=REPO_ROOT, env=None, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def test_clip_tokenizer_matches_openai_ids():
    from transformers import CLIPTokenizer

    from trainer.assets import CLIP_TOKENIZER_DIR

    tok = CLIPTokenizer.from_pretrained(CLIP_TOKENIZER_DIR)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tok) == 49408 and tok.model_max_length == 77
    # BPE merges beyond single words: an unusual word splits into known sub-words, not <unk>.
    ids = tok("photobombing skateboarder").input_ids
    assert tok.unk_token_id not in ids[1:-1] and len(ids) > 4


@pytest.mark.parametrize("variant", ["sd15", "sd2"])
def test_tiny_pipeline_loads_in_diffusers_and_denoises(variant, tiny_sd15_dir, tiny_sd2_dir):
    import torch
    from diffusers import StableDiffusionPipeline

    folder = tiny_sd15_dir if variant == "sd15" else tiny_sd2_dir
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    unet = pipe.unet
    # The real SD block layout: 4 down blocks, 3 with cross-attention, 2 layers each, depth-1 transformers.
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert all(len(b.resnets) == 2 for b in unet.down_blocks) and len(unet.down_blocks[0].attentions[0].transformer_blocks) == 1
    assert unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    proj = unet.down_blocks[0].attentions[0].proj_in
    expected_pred = "v_prediction" if variant == "sd2" else "epsilon"
    assert pipe.scheduler.config.prediction_type == expected_pred
    assert isinstance(proj, torch.nn.Linear if variant == "sd2" else torch.nn.Conv2d)

    # One denoising step through the real pipeline code.
    out = pipe("a photo of a cat", num_inference_steps=1, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0))
    img = out.images[0]
    assert img.shape == (64, 64, 3) and (img >= 0).all() and (img <= 1).all() and img.std() > 0


COMFY_IMPORT = r"""
import importlib.util, sys, time, types
root = sys.argv[1]
# ComfyUI's own top-level `nodes` module is already loaded when custom nodes are imported.
comfy_nodes = types.ModuleType("nodes"); comfy_nodes.MAX_RESOLUTION = 16384; sys.modules["nodes"] = comfy_nodes
name = root.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, root + "/__init__.py", submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
t = time.perf_counter()
spec.loader.exec_module(module)
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("spacy", "diffusers", "peft", "accelerate", "transformers") if m in sys.modules)
print(repr((isinstance(module.NODE_CLASS_MAPPINGS, dict), isinstance(module.NODE_DISPLAY_NAME_MAPPINGS, dict),
            heavy, sys.modules["nodes"] is comfy_nodes, root in sys.path, elapsed)))
"""


def test_comfyui_import_contract():
    proc = run([sys.executable, "-c", COMFY_IMPORT, str(REPO_ROOT)], cwd="/")
    assert proc.returncode == 0, proc.stderr
    has_nodes, has_names, heavy, nodes_untouched, on_path, elapsed = eval(proc.stdout.strip().splitlines()[-1])
    assert has_nodes and has_names
    assert heavy == [], f"importing the pack pulled in {heavy}"
    assert nodes_untouched, "the pack replaced ComfyUI's top-level `nodes` module"
    assert not on_path
    assert elapsed < 5


@pytest.mark.parametrize("package", ["trainer", "convert"])
def test_cli_help_from_repo_root(package):
    proc = run([sys.executable, "-m", package, "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_wheel_installs_namespaced_package_with_console_scripts(tmp_path):
    target = tmp_path / "site"
    proc = run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                "--target", str(target), str(REPO_ROOT)], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    top_level = sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info"))
    assert "sd_adverb_lora" in top_level
    assert not {"nodes", "trainer", "convert"} & set(top_level), f"top-level names leaked: {top_level}"
    assert (target / "sd_adverb_lora" / "trainer" / "assets" / "clip_tokenizer" / "vocab.json").is_file()
    env = {"PYTHONPATH": str(target)}
    for script in ("sd-adverb-lora", "sd-adverb-lora-convert"):
        out = run([str(target / "bin" / script), "--help"], cwd=tmp_path, env=env)
        assert out.returncode == 0 and "usage:" in out.stdout, out.stderr
    # Inside the installed package, trainer reaches its sibling `convert` under the namespace.
    code = "from sd_adverb_lora.trainer.siblings import sibling; print(sibling('convert').__name__)"
    out = run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert out.stdout.strip() == "sd_adverb_lora.convert", out.stderr


def test_test_command_works_in_a_clone_named_like_the_repository(tmp_path):
    """`git clone …/sd-adverb-lora` gives a folder whose name is no Python name; pytest must still run there."""
    clone = tmp_path / "sd-adverb-lora"
    proc = run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)])
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    for path in ("__init__.py", "tests/test_foundation.py"):  # this change, committed or not
        (clone / path).write_text((REPO_ROOT / path).read_text())
    proc = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_foundation.py",
                "-k", "cli_help_from_repo_root"], cwd=clone)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "2 passed" in proc.stdout
