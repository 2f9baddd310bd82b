"""`python -m trainer sample`: determinism, LoRA formats, scale 0, sd-webui PNG parameters, bad input."""
from __future__ import annotations

import re

import numpy as np
import pytest
from fixtures_sampling import tiny_lora_files, tiny_sd15_single_file  # noqa: F401
from PIL import Image

from trainer.__main__ import main
from trainer.models.lora_apply import lora_applied
from trainer.models.base import load_base_model
from trainer.generate.sample import SampleSettings, generate, make_scheduler, webui_parameters


# sd-webui's `modules/infotext_utils.py` (`generation_parameters_copypaste` before 1.8): how PNG Info parses.
RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_webui_parameters(text: str) -> dict:
    """A faithful copy of sd-webui's `parse_generation_parameters` (prompt, negative prompt, fields)."""
    import json

    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    out, prompt, negative, done_prompt = {}, "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_prompt, line = True, line[16:].strip()
        if done_prompt:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    out["Prompt"], out["Negative prompt"] = prompt, negative
    for k, v in RE_PARAM.findall(last):
        out[k] = json.loads(v) if v.startswith('"') and v.endswith('"') else v
    return out


SETTINGS = dict(prompt="a cat sitting on a mat", negative_prompt="blurry", num_inference_steps=3, seed=7,
                scheduler="euler_a")


def _pixels(pipe, **kw) -> np.ndarray:
    return np.asarray(generate(pipe, SampleSettings(**{**SETTINGS, **kw}))[0][0])


@pytest.fixture(scope="module")
def pipe(tiny_sd15_dir):
    p = load_base_model(str(tiny_sd15_dir)).pipe
    p.set_progress_bar_config(disable=True)
    return p


def test_same_seed_same_image(pipe):
    a, b, c = _pixels(pipe), _pixels(pipe), _pixels(pipe, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_lora_formats_give_the_same_image_and_scale_zero_the_base(pipe, tiny_lora_files):
    base = _pixels(pipe)
    images = {}
    for fmt, path in tiny_lora_files.items():
        with lora_applied(pipe, path, 1.0):
            images[fmt] = _pixels(pipe)
    assert not np.array_equal(images["peft"], base)
    assert np.array_equal(images["peft"], images["diffusers"])
    assert np.array_equal(images["peft"], images["webui"])
    with lora_applied(pipe, tiny_lora_files["webui"], 0.0):
        assert np.array_equal(_pixels(pipe), base)


def test_cli_writes_pngs_that_sd_webui_png_info_reads(tiny_sd15_single_file, tiny_lora_files, tmp_path, pipe):
    out = tmp_path / "img.png"
    rc = main(["sample", "--model_name", str(tiny_sd15_single_file), "--lora", str(tiny_lora_files["webui"]),
               "--lora_scale", "0.75", "--prompt", "a dog, running", "--negative_prompt", "low quality",
               "--num_inference_steps", "3", "--guidance_scale", "5", "--seed", "100", "--num_images", "2",
               "--scheduler", "dpmpp_karras", "--output", str(out)])
    assert rc == 0
    paths = [tmp_path / "img-00.png", tmp_path / "img-01.png"]
    assert all(p.is_file() for p in paths) and not out.exists()
    params = [parse_webui_parameters(Image.open(p).info["parameters"]) for p in paths]
    assert params[0]["Prompt"] == "a dog, running <lora:tiny_webui:0.75>"
    assert params[0]["Negative prompt"] == "low quality"
    assert [p["Seed"] for p in params] == ["100", "101"]
    assert (params[0]["Steps"], params[0]["Sampler"], params[0]["Schedule type"]) == ("3", "DPM++ 2M", "Karras")
    assert (params[0]["CFG scale"], params[0]["Size"], params[0]["Model"]) == ("5", "64x64", "tiny-sd15")
    # Image 1 is the image a single run with seed 101 makes. The CLI loaded the same weights (bit-identical)
    # from the single file; kernels may still round differently on differently aligned tensors (measured
    # 1.5e-6 in the UNet output), so pixels may differ by one level.
    with lora_applied(pipe, tiny_lora_files["peft"], 0.75):
        again = generate(pipe, SampleSettings(prompt="a dog, running", negative_prompt="low quality",
                                              num_inference_steps=3, guidance_scale=5, seed=101,
                                              scheduler="dpmpp_karras"))[0][0]
    diff = np.abs(np.asarray(Image.open(paths[1]).convert("RGB"), dtype=int) - np.asarray(again, dtype=int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    first = np.asarray(Image.open(paths[0]).convert("RGB"), dtype=int)
    assert np.abs(first - np.asarray(again, dtype=int)).mean() > 1  # seed 100 is another image


def test_values_with_commas_are_quoted_for_png_info():
    s = SampleSettings(prompt="p", scheduler="ddim", extra={"Model": "my, model: v2"})
    parsed = parse_webui_parameters(webui_parameters(s, 1, 64, 64))
    assert parsed["Model"] == "my, model: v2" and parsed["Sampler"] == "DDIM" and parsed["Seed"] == "1"


def test_every_scheduler_keeps_the_models_prediction_type(tiny_sd2_dir):
    config = load_base_model(str(tiny_sd2_dir)).pipe.scheduler.config
    for name in ("dpmpp", "ddim", "euler_a", "euler", "heun", "pndm", "unipc", "ddpm"):
        assert make_scheduler(name, config).config.prediction_type == "v_prediction", name
    # A scheduler does not depend on the one the pipeline held before (Euler's linspace spacing must not leak).
    via_euler = make_scheduler("ddim", make_scheduler("euler", config).config)
    assert dict(via_euler.config) == dict(make_scheduler("ddim", config).config)
    with pytest.raises(ValueError, match="--scheduler 'dpm'"):
        make_scheduler("dpm", config)


def test_cli_bad_lora_for_model(tiny_sd15_dir, tmp_path):
    from safetensors.torch import save_file
    import torch

    bad = tmp_path / "bad.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": torch.ones(2, 768),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": torch.ones(32, 2),
               "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": torch.tensor(2.0)},
              str(bad))
    with pytest.raises(ValueError, match=r"attn2.to_k: LoRA 768->32 \(linear\), model weight \(32, 32\)"):
        main(["sample", "--model_name", str(tiny_sd15_dir), "--lora", str(bad), "--prompt", "x",
              "--num_inference_steps", "1", "--output", str(tmp_path / "o.png")])
    assert not (tmp_path / "o.png").exists()


def test_cli_prints_nothing_about_components_it_never_loads(tmp_path):
    """No transformers/diffusers noise about the safety checker's image processor or no-op dtype casts."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "trainer", "sample", "--model_name", "tiny-sd15", "--prompt", "a red bus",
                           "--num_inference_steps", "1", "--width", "64", "--height", "64",
                           "--output", str(tmp_path / "o.png")], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.png").is_file()
    assert "requires torchvision" not in proc.stderr and "ImageProcessor" not in proc.stderr
    assert "should be kept in float32" not in proc.stderr
