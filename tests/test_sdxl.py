"""SDXL on the tiny random-weight SDXL-layout model: conditioning, training, files, and real third-party loaders.

One training run (module fixture, 3 steps, kohya targets + conv LoRA, alpha 8 / rank 4) feeds the file tests.
Exact resume and the latent-cache hit for SDXL run in test_train.py's parametrized resume test.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import sys

import pytest
import torch

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)


@functools.cache
def _base():
    from trainer.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl")


def _fresh():
    """The tiny SDXL pipeline with its seed-0 weights (a copy is faster than building anew)."""
    return copy.deepcopy(_base())


def _unet_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(sample=torch.randn(batch, 4, 8, 8, generator=g), timestep=torch.tensor([10, 500][:batch]),
                encoder_hidden_states=torch.randn(batch, 77, 96, generator=g),
                added_cond_kwargs={"text_embeds": torch.randn(batch, 64, generator=g),
                                   "time_ids": torch.tensor([[96.0, 128.0, 0.0, 16.0, 64.0, 64.0]] * batch)})


def _base_state(module) -> dict:
    return {k.replace(".base_layer", ""): v for k, v in module.state_dict().items() if "lora_" not in k}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_captions):
    """(LoRA-trained pipe, TrainResult, run folder): 3 steps on tiny-sdxl, random flips, latents cached."""
    from trainer.models.base import load_base_model
    from trainer.training.train import train

    tmp = tmp_path_factory.mktemp("sdxl_run")
    model = load_base_model("tiny-sdxl")
    cfg = tiny_config(tmp, "model_name=tiny-sdxl", "train.max_train_steps=3", "dataset.random_flip=true",
                      "train.lora_targets=kohya", "train.lora_alpha=8", "train.lora_conv_rank=2",
                      "logging.save_steps=2")
    result = train(cfg, caption_set=train_captions, model=model, progress=False)
    return model.pipe, result, tmp


def test_tiny_sdxl_has_the_real_layout_and_loads_by_name_and_folder(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    import convert
    from trainer.models.base import load_base_model
    from trainer.models.tiny import save_tiny_pipeline

    base = load_base_model("tiny-sdxl")
    assert isinstance(base.pipe, StableDiffusionXLPipeline)
    assert (base.family, base.prediction_type) == ("sdxl", "epsilon")
    unet = base.pipe.unet
    assert unet.config.addition_embed_type == "text_time" and len(unet.config.block_out_channels) == 3
    assert type(base.pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    # Every layer a LoRA can adapt is a layer of the real SDXL UNet (convert's SDXL table, depth 10 kept).
    table = convert.keymap.table().to_ldm
    adaptable = [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
                 and (".transformer_blocks." in n or ".resnets." in n or "samplers" in n)]
    assert adaptable and all(("sdxl", n) in table for n in adaptable), [n for n in adaptable if ("sdxl", n) not in table]
    # A saved diffusers folder loads as SDXL again (model_index.json names the pipeline class).
    folder = save_tiny_pipeline(tmp_path / "tiny-sdxl", "sdxl")
    again = load_base_model(str(folder), prediction_type="v_prediction")
    assert isinstance(again.pipe, StableDiffusionXLPipeline) and again.family == "sdxl"
    assert again.prediction_type == "v_prediction"
    assert torch.equal(again.pipe.unet.conv_in.weight, unet.conv_in.weight)


def test_text_and_size_conditioning_match_diffusers(tmp_path):
    from PIL import Image

    from trainer.models.conditioning import add_time_ids, encode_prompts, text_parts
    from trainer.training.dataset import load_image

    pipe = _base()
    prompts = ["a cat", "a dog quickly running across a very long street"]
    ours = encode_prompts(text_parts(pipe), prompts)
    embeds, _, pooled, _ = pipe.encode_prompt(prompts, device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False)
    assert torch.equal(ours["embedding"], embeds) and torch.equal(ours["pooled"], pooled)
    assert ours["embedding"].shape == (2, 77, 32 + 64) and ours["pooled"].shape == (2, 64)
    want = pipe._get_add_time_ids((300, 200), (12, 34), (64, 128), dtype=torch.float32, text_encoder_projection_dim=64)
    assert torch.equal(add_time_ids((300, 200), (12, 34), (64, 128))[None], want)

    # A 200x100 (w x h) image into a 64x64 bucket: resized to 128x64, centre crop at left 32; flipped, the
    # crop is mirrored (128 - 32 - 64 = 32 here: pick an off-centre random crop to see it move).
    path = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), (200, 10, 10)).save(path)
    _, ids = load_image(str(path), (64, 64))
    assert ids.tolist() == [100, 200, 0, 32, 64, 64]

    class Rng:  # numpy-generator stand-in: left 10, top 0
        def __init__(self):
            self.values = [10, 0]

        def integers(self, lo, hi):
            return self.values.pop(0)

    _, plain = load_image(str(path), (64, 64), "random", False, Rng())
    _, flipped = load_image(str(path), (64, 64), "random", True, Rng())
    assert plain.tolist() == [100, 200, 0, 10, 64, 64] and flipped.tolist() == [100, 200, 0, 128 - 10 - 64, 64, 64]


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_loss_target_against_hand_computation_with_add_time_ids(prediction):
    from diffusers import DDPMScheduler

    from trainer.training.train import diffusion_loss

    pipe = _base()
    sched = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type=prediction)
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8)
    text = {"embedding": torch.randn(2, 77, 96), "pooled": torch.randn(2, 64)}
    # Two images of different original size / crop: the size conditioning must reach the UNet per sample.
    time_ids = torch.stack([pipe._get_add_time_ids((480, 640), (0, 80), (64, 64), torch.float32, 64)[0],
                            pipe._get_add_time_ids((64, 64), (0, 0), (64, 64), torch.float32, 64)[0]])
    cond = {"encoder_hidden_states": text["embedding"],
            "added_cond_kwargs": {"text_embeds": text["pooled"], "time_ids": time_ids}}
    with torch.no_grad():
        loss = diffusion_loss(pipe.unet, sched, x0, cond, torch.Generator().manual_seed(7), prediction)

    gen = torch.Generator().manual_seed(7)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 1000, (2,), generator=gen)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2  # scaled_linear
    a = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    with torch.no_grad():
        pred = pipe.unet(noisy, t, text["embedding"],
                         added_cond_kwargs={"text_embeds": text["pooled"], "time_ids": time_ids}).sample
        other = pipe.unet(noisy, t, text["embedding"], added_cond_kwargs={
            "text_embeds": text["pooled"], "time_ids": time_ids.flip(0)}).sample
    torch.testing.assert_close(loss, ((pred - target) ** 2).mean(), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(pred, other, atol=1e-4)  # the size conditioning changes the prediction


def test_training_changes_only_the_lora_and_caches_size_conditioning(trained, train_captions):
    from PIL import Image
    from safetensors import safe_open

    from trainer.models.lora import lora_state_dict

    pipe, result, tmp = trained
    reference = _base()
    assert result.final_step == 3 and all(0 < x < 10 for x in result.losses)
    lora = lora_state_dict(pipe.unet)
    assert any("conv1" in k for k in lora) and all(v.dtype == torch.float32 for v in lora.values())
    assert all(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        got, want = _base_state(getattr(pipe, name)), getattr(reference, name).state_dict()
        assert got.keys() == want.keys(), name
        assert all(torch.equal(got[k], want[k]) for k in want), f"{name} base weights changed"
    assert not any(p.requires_grad for p in pipe.text_encoder_2.parameters()) and not pipe.text_encoder_2.training

    # The cache holds each image's time_ids next to its latent, and both encoders' output per caption.
    assert result.cache_stats == {"latents_total": 24, "latents_encoded": 24, "text_total": 12, "text_encoded": 12}
    sizes = set()
    for f in (tmp / "cache" / "latents").rglob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            ids = st.get_tensor("time_ids")
            assert st.get_tensor("latent").shape[0] == 4 and ids[4:].tolist() in ([64, 64], [64, 128], [128, 64])
            sizes.add(tuple(ids[:2].tolist()))
    for f in (tmp / "cache" / "text").rglob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            assert st.get_tensor("embedding").shape == (77, 96) and st.get_tensor("pooled").shape == (64,)
    originals = set()
    for rec in train_captions.records:
        with Image.open(rec.image_path) as im:
            originals.add((im.height, im.width))
    assert sizes == originals  # each image's original (h, w), not the bucket's

    with safe_open(str(result.lora_path), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
        alphas = [f.get_tensor(k) for k in keys if k.endswith(".alpha")]
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0" and meta["ss_v2"] == "False"
    assert meta["modelspec.architecture"].startswith("stable-diffusion-xl-v1-base")
    assert alphas and all(a.dtype == torch.float32 for a in alphas)
    # kohya's SDXL spelling: LDM block names (input_blocks.4 = the first attention level), never diffusers'.
    assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight" in keys
    assert "lora_unet_middle_block_1_transformer_blocks_1_ff_net_2.lora_up.weight" in keys
    assert "lora_unet_output_blocks_2_2_conv.lora_down.weight" in keys  # up block 0's upsampler
    assert not any("down_blocks" in k or "up_blocks" in k or "mid_block" in k for k in keys)
    assert (result.peft_dir / "adapter_config.json").is_file()


def test_webui_peft_and_diffusers_files_load_in_diffusers_sdxl_with_the_trained_strength(trained, tmp_path):
    import convert

    pipe, result, _ = trained
    x = _unet_inputs()
    with torch.no_grad():
        want = pipe.unet(**x).sample
        base = _base().unet(**x).sample
    assert not torch.allclose(base, want, atol=1e-4), "the LoRA must change the UNet output for this test to mean anything"
    diffusers_file = convert.save_diffusers(convert.load_any(result.peft_dir), tmp_path / "diffusers_lora.safetensors")
    for path in (result.lora_path, diffusers_file):  # the webui (kohya SDXL) file and the diffusers file
        fresh = _fresh()
        fresh.load_lora_weights(str(path.parent), weight_name=path.name)
        with torch.no_grad():
            got = fresh.unet(**x).sample
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # The PEFT adapter folder, read back and injected through PEFT itself (as test_convert_peft does for SD1).
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    fresh = _fresh()
    sd, cfg = convert.to_peft_state_dict(convert.load_any(result.peft_dir), "unet")
    inject_adapter_in_model(LoraConfig(**cfg), fresh.unet)
    assert not set_peft_model_state_dict(fresh.unet, sd).unexpected_keys
    with torch.no_grad():
        torch.testing.assert_close(fresh.unet(**x).sample, want, rtol=1e-4, atol=1e-5)
    assert convert.verify(convert.load_any(result.peft_dir), result.lora_path).ok


def test_single_file_round_trip_in_the_sgm_layout(tmp_path):
    from trainer.models.base import load_base_model
    from trainer.models.single_file import load_single_file, read_checkpoint_shapes, save_single_file

    src = _base()
    path = save_single_file(src, tmp_path / "tiny-sdxl.safetensors", save_config=True)
    shapes = read_checkpoint_shapes(path)
    for key in ("model.diffusion_model.label_emb.0.0.weight",  # the pooled-text + size embedding
                "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
                "model.diffusion_model.output_blocks.2.2.conv.weight",
                "conditioner.embedders.0.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight",
                "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight",
                "conditioner.embedders.1.model.text_projection",
                "first_stage_model.decoder.up.3.upsample.conv.weight"):
        assert key in shapes, key
    assert shapes["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"] == (3 * 64, 64)
    base = load_base_model(str(path))
    assert (base.family, base.prediction_type) == ("sdxl", "epsilon")
    pipe = base.pipe
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(src, name).state_dict(), getattr(pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    x = _unet_inputs()
    with torch.no_grad():
        torch.testing.assert_close(pipe.unet(**x).sample, src.unet(**x).sample, rtol=0, atol=0)
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"
    # A v-prediction SDXL file is marked as ComfyUI marks it (an empty `v_pred` tensor).
    from safetensors.torch import load_file, save_file

    sd = load_file(path)
    sd["v_pred"] = torch.tensor([])
    save_file(sd, tmp_path / "tiny-sdxl-v.safetensors")
    (tmp_path / "tiny-sdxl.config").rename(tmp_path / "tiny-sdxl-v.config")
    assert load_single_file(tmp_path / "tiny-sdxl-v.safetensors")[1:] == ("sdxl", "v_prediction")


def test_shipped_sdxl_config_round_trips_through_diffusers_converters():
    """The real SDXL base sizes, on the meta device: our diffusers -> SGM tables, then diffusers' own converters."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from trainer.models.single_file import SDXL_OPENCLIP_PREFIX, SHIPPED_CONFIGS, openclip_to_ldm, unet_to_ldm

    cfg_dir = SHIPPED_CONFIGS["sdxl"]
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg_dir / "unet"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg_dir / "text_encoder_2"))
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684  # SDXL base 1.0's UNet
    sd = unet.state_dict()
    again = sfu.convert_ldm_unet_checkpoint(unet_to_ldm(sd, unet.config), unet.config)
    assert {k: tuple(v.shape) for k, v in again.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    ldm = openclip_to_ldm(te2.state_dict(), SDXL_OPENCLIP_PREFIX)
    assert sfu.CHECKPOINT_KEY_NAMES["xl_base"] in ldm  # what diffusers itself detects SDXL base by
    back = sfu.convert_open_clip_checkpoint(te2, ldm, prefix=SDXL_OPENCLIP_PREFIX)
    want = {k: tuple(v.shape) for k, v in te2.state_dict().items() if "position_ids" not in k}
    assert {k: tuple(v.shape) for k, v in back.items() if "position_ids" not in k} == want


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set (a ComfyUI checkout)")
def test_comfyui_sdxl_key_map_accepts_every_key(trained):
    """ComfyUI's own UNet key table for SDXL base (comfy.utils.unet_to_diffusers, which model_lora_keys_unet uses)
    names every module of the trained file: `lora_unet_<LDM path>` for each SDXL weight."""
    from safetensors import safe_open

    sys.path.insert(0, os.environ["COMFYUI_PATH"])
    try:
        import comfy.utils
    finally:
        sys.path.remove(os.environ["COMFYUI_PATH"])
    # SDXL base as comfy.model_detection reads it from the checkpoint.
    unet_config = {"num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
                   "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10}
    ldm_weights = {ldm for ldm in comfy.utils.unet_to_diffusers(unet_config).values() if ldm.endswith(".weight")}
    accepted = {"lora_unet_" + k[: -len(".weight")].replace(".", "_") for k in ldm_weights}
    _, result, _ = trained
    with safe_open(str(result.lora_path), "pt") as f:
        names = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in f.keys()}
    assert names and not names - accepted, sorted(names - accepted)[:5]


def test_sample_and_eval_adverbs_cli_on_sdxl(trained, tmp_path):
    from PIL import Image

    from trainer.__main__ import main

    _, result, _ = trained
    out = tmp_path / "img.png"
    assert main(["sample", "--model_name", "tiny-sdxl", "--lora", str(result.lora_path), "--prompt", "a cat",
                 "--num_inference_steps", "2", "--guidance_scale", "5", "--width", "64", "--height", "64",
                 "--scheduler", "euler", "--output", str(out)]) == 0
    assert Image.open(out).size == (64, 64) and "Size: 64x64" in Image.open(out).info["parameters"]
    report_dir = tmp_path / "report"
    assert main(["eval-adverbs", "--model_name", "tiny-sdxl", "--lora", str(result.lora_path), "--device", "cpu",
                 "--adverbs", "quickly", "--max_pairs", "2", "--timesteps", "200,800", "--num_latents", "1",
                 "--resolution", "64", "--output", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    s = report["summary"]["noise_prediction"]["overall"]
    assert report["settings"]["family"] == "sdxl" and s["lora"] != s["base"] and s["base"] > 0
