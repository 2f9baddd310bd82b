"""Adverb-sensitivity evaluation: deterministic, format-independent, zero effect at scale 0, report files."""
from __future__ import annotations

import json

import pytest
from fixtures_sampling import tiny_lora_files  # noqa: F401
from PIL import Image

from trainer.__main__ import main
from trainer.generate.evaluate import (
    PromptPair,
    adverb_sensitivity,
    insert_adverb,
    pairs_from_captions,
    read_prompts_file,
)
from trainer.models.lora_apply import lora_applied
from trainer.models.base import load_base_model


PAIRS = pairs_from_captions(["a man riding a horse on a beach", "a red bus on a street"], ("quickly", "slowly"))
FAST = dict(timesteps=(200, 800), num_latents=1)


@pytest.fixture(scope="module")
def pipe(tiny_sd15_dir):
    return load_base_model(str(tiny_sd15_dir)).pipe


def test_insert_adverb():
    assert insert_adverb("a man riding a horse.", "quickly") == "a man quickly riding a horse"
    assert insert_adverb("a red bus on a street", "slowly") == "a red bus on a street slowly"
    assert insert_adverb("Building with a clock", "quietly") == "Building with a clock quietly"


def test_deterministic_for_a_seed(pipe):
    a = adverb_sensitivity(pipe, PAIRS, seed=3, **FAST)
    b = adverb_sensitivity(pipe, PAIRS, seed=3, **FAST)
    c = adverb_sensitivity(pipe, PAIRS, seed=4, **FAST)
    assert a == b
    assert a["overall"] != c["overall"]
    assert a["overall"] > 0 and set(a["per_adverb"]) == {"quickly", "slowly"}
    assert [r["with_adverb"] for r in a["pairs"]][:1] == ["a man quickly riding a horse on a beach"]


def test_same_numbers_for_every_lora_format_and_base_at_scale_zero(pipe, tiny_lora_files):
    base = adverb_sensitivity(pipe, PAIRS, seed=0, **FAST)
    per_format = {}
    for fmt, path in tiny_lora_files.items():
        with lora_applied(pipe, path, 1.0):
            per_format[fmt] = adverb_sensitivity(pipe, PAIRS, seed=0, **FAST)
    assert per_format["peft"] == per_format["diffusers"] == per_format["webui"]
    assert per_format["peft"]["overall"] != base["overall"]
    with lora_applied(pipe, tiny_lora_files["diffusers"], 0.0):
        assert adverb_sensitivity(pipe, PAIRS, seed=0, **FAST) == base


def test_components_with_a_peft_unet_match_the_merged_lora(pipe, tiny_lora_files):
    """What training calls at validation time (a PEFT-wrapped UNet) measures what the CLI measures."""
    import copy

    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    from trainer.siblings import sibling

    convert = sibling("convert")
    lora = convert.load_any(tiny_lora_files["peft"])
    lora.modules = {k: m for k, m in lora.modules.items() if k.startswith("unet.")}
    sd, cfg = convert.to_peft_state_dict(lora, "unet")
    unet = copy.deepcopy(pipe.unet)
    inject_adapter_in_model(LoraConfig(**cfg), unet)
    set_peft_model_state_dict(unet, sd)
    parts = dict(unet=unet, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler)
    wrapped = adverb_sensitivity(parts, PAIRS, seed=0, **FAST)
    with lora_applied(pipe, lora, 1.0):
        merged = adverb_sensitivity(pipe, PAIRS, seed=0, **FAST)
    assert wrapped["overall"] == pytest.approx(merged["overall"], rel=1e-4)
    assert not unet.training
    unet.train()
    adverb_sensitivity(parts, PAIRS[:1], seed=0, **FAST)
    assert unet.training, "the caller's train/eval mode must be restored"


def test_cli_report_and_chart(tiny_sd15_dir, tiny_lora_files, tmp_path, capsys):
    prompts = tmp_path / "pairs.jsonl"
    prompts.write_text("\n".join(json.dumps({"plain": p.plain, "with_adverb": p.with_adverb, "adverb": p.adverb})
                                 for p in PAIRS[:2]))
    out = tmp_path / "report"
    rc = main(["eval-adverbs", "--model_name", str(tiny_sd15_dir), "--lora", str(tiny_lora_files["webui"]),
               "--prompts", str(prompts), "--seed", "5", "--timesteps", "200,800", "--num_latents", "1",
               "--image_distance", "--num_inference_steps", "2", "--output", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    s = report["summary"]["noise_prediction"]
    assert set(s["per_adverb"]) == {"quickly", "slowly"}
    assert s["overall"]["lora"] != s["overall"]["base"]
    assert s["overall"]["change"] == pytest.approx((s["overall"]["lora"] - s["overall"]["base"]) / s["overall"]["base"])
    assert report["settings"]["seed"] == 5 and report["settings"]["num_pairs"] == 2
    assert report["results"]["lora"]["image"]["overall"] > 0
    # Readable on its own: CIs, and the distance of a change the picture shows (man -> woman) for both models
    for key in ("base", "lora"):
        for row in (s["overall"], *s["per_adverb"].values(), s["reference"]):
            lo, hi = row[f"{key}_ci"]
            assert lo <= row[key] <= hi
    ref_rows = [r for r in report["results"]["base"]["noise_prediction"]["pairs"] if r["adverb"] == "reference"]
    assert [(r["plain"], r["with_adverb"]) for r in ref_rows] == [(PAIRS[0].plain, "a woman riding a horse on a beach")]
    assert s["reference"]["base"] == ref_rows[0]["distance"] and s["reference"]["lora"] > 0
    printed = capsys.readouterr().out
    assert f"reference, a colour/object word swapped {s['reference']['base']:.5f}" in printed
    assert f"adverbs move it {s['overall']['base'] / s['reference']['base']:.0%} as much" in printed
    # The CLI's number is the library's number for the same inputs.
    pipe = load_base_model(str(tiny_sd15_dir)).pipe
    lib = adverb_sensitivity(pipe, PAIRS[:2], seed=5, timesteps=(200, 800), num_latents=1)
    assert report["results"]["base"]["noise_prediction"]["overall"] == lib["overall"]
    with Image.open(out / "sensitivity.png") as im:
        assert im.size[0] > 100


def test_cli_on_cpu_says_its_plan_shows_progress_and_defaults_to_a_lower_resolution(tiny_sd15_dir, tmp_path, capsys):
    """A 512 px model: on CPU eval-adverbs measures at 256 px unless told, and says its plan first."""
    from diffusers import StableDiffusionPipeline

    model = tmp_path / "tiny-512"  # the tiny UNet is all convolutions and attention: any size runs
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd15_dir), safety_checker=None)
    pipe.unet.register_to_config(sample_size=64)
    pipe.save_pretrained(model)
    rc = main(["eval-adverbs", "--model_name", str(model), "--device", "cpu", "--adverbs", "quickly,slowly",
               "--max_pairs", "3", "--timesteps", "200,800", "--num_latents", "1", "--output", str(tmp_path / "r")])
    assert rc == 0
    out, err = capsys.readouterr()
    # 3 pairs = 1 caption x 2 adverbs + the next caption x 1: 5 distinct prompts, x 1 latent x 2 timesteps
    # + the reference pairs of the 2 captions (man -> woman, red -> blue): 7 prompts
    assert ("3 pairs + 2 reference pairs, 7 prompts x 1 latents x 2 timesteps = 14 UNet evaluations per model, "
            "14 in all (base only), "
            "at 256 px (CPU default, lower than the model's native size; --resolution to change) on cpu") in out
    assert out.index("UNet evaluations") < out.index("adverb sensitivity (")  # printed before measuring
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["settings"]["resolution"] == 256
    assert report["results"]["base"]["noise_prediction"]["settings"]["latent_size"] == 32
    assert "base: 100%" in err and "14/14" in err  # the tqdm bar, counted in UNet evaluations


def test_bootstrap_ci_and_reference_pairs():
    from trainer.generate.evaluate import bootstrap_ci, reference_pairs, swap_content_word

    assert bootstrap_ci([0.5, 0.5, 0.5]) == [0.5, 0.5]
    few, many = bootstrap_ci([1.0, 2.0, 3.0, 4.0]), bootstrap_ci([1.0, 2.0, 3.0, 4.0] * 25)
    assert few[0] < 2.5 < few[1] and many[0] < 2.5 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 3  # 25x the pairs: about a fifth of the width
    assert bootstrap_ci([1.0, 2.0, 3.0, 4.0]) == few  # seeded: the same report twice
    assert swap_content_word("a man with a red umbrella") == "a man with a blue umbrella"  # a colour first
    assert swap_content_word("A dog on a sofa.") == "A cat on a sofa" and swap_content_word("it is so") is None
    refs = reference_pairs(PAIRS + [PromptPair("nothing to swap here", "nothing quickly to swap here", "quickly")])
    assert refs == [PromptPair("a man riding a horse on a beach", "a woman riding a horse on a beach", "reference"),
                    PromptPair("a red bus on a street", "a blue bus on a street", "reference")]


def test_prompt_files(tmp_path):
    txt = tmp_path / "captions.txt"
    txt.write_text("a dog running in a field\n\na cat on a bed\n")
    pairs = read_prompts_file(txt, ("quickly",))
    assert pairs == [PromptPair("a dog running in a field", "a dog quickly running in a field", "quickly"),
                     PromptPair("a cat on a bed", "a cat on a bed quickly", "quickly")]
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"plain": "a", "with_adverb": "a b", "adverb": "b"}\n{"plain": "x"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: expected"):
        read_prompts_file(bad)


def test_coco_pairs(coco_root):
    from trainer.generate.evaluate import pairs_from_coco

    try:
        pairs = pairs_from_coco(coco_root / "annotations" / "captions_train2014.json", limit=5)
    except Exception as e:  # spaCy model missing in this environment
        if type(e).__name__ == "SpacyModelMissing":
            pytest.skip(str(e))
        raise
    assert pairs and all(p.plain != p.with_adverb and p.adverb for p in pairs)
    for p in pairs:
        for word in p.adverb.split():
            assert word in p.with_adverb.lower()
