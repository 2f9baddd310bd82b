"""Mode `decorrelate` (trainer/captions/decorrelate.py): the adverbs safe mode removes are redrawn from a pool of the
same category and slot, put in at a rate, K variants per caption; the text cache holds every variant and training
uses one per epoch. Real spaCy (en_core_web_sm), real COCO captions, the tiny model for training."""
from __future__ import annotations

import json
import random
import re

import pytest

from fixtures_train import tiny_config, train_captions  # noqa: F401  (fixture)


def _set(captions, prefix="img"):
    from trainer.captions.captionset import CaptionRecord, CaptionSet

    return CaptionSet(tuple(CaptionRecord(f"/{prefix}/{i}.png", c, source_id=str(i)) for i, c in enumerate(captions)))


def _decorrelate(captions, nlp, **kw):
    from trainer.captions.decorrelate import decorrelate_adverbs

    return decorrelate_adverbs(_set(captions), model=nlp, workers=1, cache_dir=False, **kw)


ANIMALS = ("dog", "cat", "horse", "man", "woman", "boy", "girl", "bird")
VERBS = ("running", "sitting", "standing", "walking", "playing")
PLACES = ("beach", "grass", "street", "field", "road")


def _plain(rng, n):
    return [f"a {rng.choice(('brown', 'black', 'white'))} {rng.choice(ANIMALS)} {rng.choice(VERBS)} on the "
            f"{rng.choice(PLACES)}" for _ in range(n)]


def _words(text):
    return re.findall(r"[A-Za-z']+", text.lower())


def test_replacement_keeps_category_and_slot_and_the_rest_of_the_caption(nlp):
    rng = random.Random(0)
    degree = [f"a {w} {a} dog sitting on the grass" for w in ("very", "extremely", "slightly", "really")
              for a in ("large", "small", "old", "happy")]
    manner = [f"a {a} {w} running on the beach" for w in ("quickly", "slowly", "happily", "gently")
              for a in ANIMALS[:4]]
    plain = _plain(rng, 16)
    out = _decorrelate(degree + manner + plain, nlp, variants=6, rate=1.0, seed=3)
    report = out.provenance["adverb_filter"]["decorrelate"]
    pool = report["pool"]["words"]
    assert set(pool["degree/pre-adj"]) == {"very", "extremely", "slightly", "really"}
    assert set(pool["manner/pre-verb"]) == {"quickly", "slowly", "happily", "gently"}
    seen = {"degree": set(), "manner": set()}
    for rec, cat in zip(out.records, ["degree"] * len(degree) + ["manner"] * len(manner)):
        assert len(rec.variants) == 6 and rec.caption == rec.variants[0]
        orig = _words(rec.original)
        slot_pool = pool[f"{cat}/{'pre-adj' if cat == 'degree' else 'pre-verb'}"]
        at = next(i for i, w in enumerate(orig) if w in slot_pool)
        for v in rec.variants:  # rate 1 and one adverb each: redrawn in place (maybe the same word), rest kept
            words = _words(v)
            assert len(words) == len(orig) and words[at] in slot_pool, v
            assert all(a == b or {a, b} == {"a", "an"} for i, (a, b) in enumerate(zip(orig, words)) if i != at), v
            seen[cat].add(words[at])
    assert seen["degree"] == set(pool["degree/pre-adj"]) and seen["manner"] == set(pool["manner/pre-verb"])
    assert report["replaced_by_category"] == {"degree": 16 * 6, "manner": 16 * 6}


def test_insertion_rate_follows_the_data_or_the_set_rate(nlp):
    rng = random.Random(1)
    captions = _plain(rng, 400)
    with_adverb = rng.sample(range(400), 100)  # a quarter of the captions have one manner adverb before the verb
    for i in with_adverb:
        w = captions[i].split()
        captions[i] = " ".join(w[:3] + [rng.choice(("quickly", "slowly"))] + w[3:])
    out = _decorrelate(captions, nlp, variants=4, seed=0)
    report = out.provenance["adverb_filter"]["decorrelate"]
    assert report["dataset_rate"] == pytest.approx(0.25) and report["rate_source"] == "dataset"
    has = [[any(a in _words(v) for a in ("quickly", "slowly")) for v in r.variants] for r in out.records]
    share = sum(map(sum, has)) / 1600
    assert abs(share - 0.25) < 0.04 and report["rate_achieved"] == pytest.approx(share)
    # presence says nothing about the caption: the captions that had one get one as often as those that had none
    had = sum(sum(has[i]) for i in with_adverb) / 400
    had_not = sum(sum(h) for i, h in enumerate(has) if i not in set(with_adverb)) / 1200
    assert abs(had - had_not) < 0.08, (had, had_not)
    out = _decorrelate(captions, nlp, variants=4, seed=0, rate=0.6)
    share = sum(any(a in _words(v) for a in ("quickly", "slowly")) for r in out.records for v in r.variants) / 1600
    assert abs(share - 0.6) < 0.04 and out.provenance["adverb_filter"]["decorrelate"]["rate_source"] == "set"


def test_visual_adverbs_and_the_rest_untouched(nlp):
    captions = ["Two dogs very happily sitting together outside.", "A dimly lit room with a very old couch.",
                "A truck lying upside down on the side of a road.", "A man is still standing outside the shop."]
    out = _decorrelate(captions * 5, nlp, variants=5, rate=1.0, seed=0)
    for rec in out.records:
        for v in rec.variants:
            for visual in ("together", "outside", "dimly lit", "upside down"):
                assert (visual in rec.original) == (visual in v), (rec.original, v)


def test_deterministic_for_a_seed_and_different_for_another(nlp):
    rng = random.Random(2)
    captions = _plain(rng, 60) + ["a very large dog sitting on the grass"] * 10
    a = _decorrelate(captions, nlp, variants=4, seed=5)
    b = _decorrelate(captions, nlp, variants=4, seed=5)
    c = _decorrelate(captions, nlp, variants=4, seed=6)
    assert [r.variants for r in a.records] == [r.variants for r in b.records]
    assert [r.variants for r in a.records] != [r.variants for r in c.records]
    # identical captions of different images are drawn independently
    assert len({r.variants for r in a.records[60:]}) > 1


def test_variants_survive_save_and_load_with_provenance(nlp, tmp_path):
    from trainer.captions.captionset import CaptionSet

    out = _decorrelate(["a very large dog sitting on the grass", "a cat quickly running on the road",
                        "a dog sitting on the grass", "a horse walking on the road"], nlp, variants=3, seed=1)
    back = CaptionSet.load(out.save(tmp_path / "c.jsonl"))
    assert [r.variants for r in back.records] == [r.variants for r in out.records]
    assert all(len(r.variants) == 3 for r in back.records) and back.records[1].original == out.records[1].original
    info = back.provenance["adverb_filter"]
    assert info["mode"] == "decorrelate"
    d = info["decorrelate"]
    assert (d["variants"], d["seed"], d["rate"]) == (3, 1, None) and d["pool"]["source"] == "dataset"
    assert d["examples"] and {"replaced_by_category", "inserted_by_category", "rate_achieved"} <= set(d)


def test_articles_agree_after_insertion_and_replacement(nlp):
    out = _decorrelate(["An old man sitting on an old bench.", "A very small cat sitting on a table."], nlp,
                       variants=8, rate=1.0, seed=0, pool=["extremely", "very"])
    texts = [v for r in out.records for v in r.variants]
    assert any("extremely" in t for t in texts) and any(re.search(r"\bvery\b", t) for t in texts)
    for t in texts:
        assert not re.search(r"\b[Aa] extremely\b|\b[Aa]n very\b|\b[Aa]n small\b|\b[Aa] old\b", t), t


def test_article_agreement_reads_capitals_as_the_filter_does():
    """`decorrelate` re-agrees an article by the filter's own test of an all-capitals caption (repair.is_all_caps):
    a long one is words ("AN OLD FBI VAN": "old"), a short one may be an acronym ("AN FBI"), as `rebuild` reads them."""
    from trainer.captions.decorrelate import _fix_article

    assert _fix_article("THIS IS A OLD FBI VAN", 10) == "THIS IS AN OLD FBI VAN"
    assert _fix_article("A FBI", 2) == "AN FBI"
    assert _fix_article("An dog on a bench", 3) == "A dog on a bench"


def test_word_list_pool(nlp):
    rng = random.Random(4)
    out = _decorrelate(_plain(rng, 40) + ["a dog quickly running on the beach"], nlp, variants=3, rate=1.0,
                       seed=0, pool=["slowly"])
    assert out.provenance["adverb_filter"]["decorrelate"]["pool"]["source"] == "word list"
    for r in out.records:
        for v in r.variants:
            assert "quickly" not in v and ("slowly" in v or v == r.original.replace("quickly ", "")), v
    with pytest.raises(ValueError, match="'table' is not an adverb safe mode removes"):
        _decorrelate(["a dog running"], nlp, pool=["table"])
    with pytest.raises(ValueError, match="'so' cannot be drawn"):
        _decorrelate(["a dog running"], nlp, pool=["so"])
    with pytest.raises(ValueError, match="'utterly' is a degree word that does not premodify"):
        _decorrelate(["a dog running"], nlp, pool=["utterly"])
    # Filter version 9: 'totally' says how much of the thing is true (focus), which safe mode keeps.
    with pytest.raises(ValueError, match="'totally' is not an adverb safe mode removes"):
        _decorrelate(["a dog running"], nlp, pool=["totally"])


def test_other_modes_switches_are_refused_and_none_is_identity(nlp):
    from trainer.captions.decorrelate import process_captions

    cs = _set(["a dog quickly running"])
    with pytest.raises(ValueError, match="remove_categories apply to the filter modes only"):
        process_captions(cs, "decorrelate", remove_categories=["spatial"], model=nlp)
    assert process_captions(cs, "none") is cs
    assert process_captions(cs, "safe", model=nlp, workers=1, cache_dir=False).records[0].caption == "a dog running"


def test_real_coco_captions_keep_their_grammar(nlp, shared_data):
    """A sample of val2017 captions at a high rate (many insertions) with the safety net off: no hazard at all."""
    from trainer.captions.adverbs import AdverbFilter
    from trainer.captions.decorrelate import Decorrelator
    from trainer.captions.hazards import hazards

    anns = json.loads((shared_data / "coco" / "captions_val2017.json").read_text(encoding="utf-8"))["annotations"]
    caps = [a["caption"] for a in random.Random(0).sample(anns, 1500)]
    f = AdverbFilter("safe", model=nlp)
    d = Decorrelator(f, variants=2, rate=0.6, seed=0, check_hazards=False)
    variants, results, report = d.run(caps, workers=1, cache_dir=False)
    changed = 0
    for r, vs in zip(results, variants):
        for v in vs:
            assert not hazards(r.original, v, [(s.start, s.end) for s in r.removed]), (r.original, v)
            assert v[:1] == r.original[:1] or v[:1].upper() == r.original[:1].upper()
            changed += v != r.text
    assert report["inserted_by_category"] and changed > 0.4 * len(caps) * 2


# ------------------------------------------------------------------------------------------ training

def test_text_cache_holds_every_variant_and_epochs_choose_one(tmp_path, train_captions):  # noqa: F811
    import torch

    from dataclasses import replace

    from trainer.models.conditioning import encode_prompts
    from trainer.models.tiny import build_tiny_pipeline
    from trainer.training.dataset import build_samples, variant_index
    from trainer.training.latent_cache import build_cache

    records = [replace(r, variants=(r.caption, r.caption + " quickly", "a very " + r.caption)) if i % 2 == 0 else r
               for i, r in enumerate(train_captions.records)]
    cs = train_captions.with_records(records)
    pipe = build_tiny_pipeline("sd15")
    samples = build_samples(cs, 64)
    assert samples[0].variants == records[0].variants and samples[1].variants == ()
    data = build_cache(samples, tmp_path, pipe.vae, pipe.text_encoder, pipe.tokenizer, progress=False)
    assert data.stats["text_total"] == 12 + 6 * 2  # each caption + the two new variants of the six with variants
    for k in range(3):
        _, emb = data.batch([0, 1], variants=[k, 0])
        want = encode_prompts({"text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer},
                              [records[0].variants[k], records[1].caption])["embedding"]
        assert torch.allclose(emb, want, atol=1e-6)
    # each block of K epochs uses every variant once, reproducibly; a sample without variants always uses 0
    for index in range(6):
        for block in range(3):
            picks = [variant_index(7, e, index, 3) for e in range(3 * block, 3 * block + 3)]
            assert sorted(picks) == [0, 1, 2]
    assert [variant_index(7, e, 2, 3) for e in range(9)] == [variant_index(7, e, 2, 3) for e in range(9)]
    assert len({tuple(variant_index(s, e, 0, 3) for e in range(6)) for s in range(8)}) > 1
    assert variant_index(7, 5, 1, 0) == 0 and variant_index(7, 5, 1, 1) == 0


def test_training_on_decorrelated_captions_records_provenance(tmp_path, coco_root, nlp, monkeypatch):
    from safetensors import safe_open

    from trainer.training.config import load_config
    from trainer.training.dataset import variant_index
    from trainer.training.latent_cache import CachedData
    from trainer.training.train import train

    calls = []
    batch = CachedData.batch
    monkeypatch.setattr(CachedData, "batch", lambda self, indices, flips=None, variants=None: (
        calls.append((list(indices), list(variants or []), len(self.sample_variants[0]))),
        batch(self, indices, flips, variants))[1])
    cfg = tiny_config(tmp_path, f"dataset.raw_root={coco_root}", "dataset.split=train2014", "dataset.captions=first",
                      "dataset.adverb_mode=decorrelate", "dataset.decorrelate_variants=3",
                      "dataset.decorrelate_rate=0.5", "dataset.seed=4", "train.max_train_steps=12",
                      "logging.save_steps=0", "logging.log_steps=6")
    result = train(cfg, progress=False)
    # 12 images, batches of 2: steps 0-5 are epoch 0, 6-11 epoch 1; each sample uses the variant of its epoch
    assert len(calls) == 12 and all(k == 3 for _, _, k in calls)
    for step, (indices, variants, _) in enumerate(calls):
        assert variants == [variant_index(cfg.train.seed, step // 6, i, 3) for i in indices]
    first = {i: v for indices, vs, _ in calls[:6] for i, v in zip(indices, vs)}
    second = {i: v for indices, vs, _ in calls[6:] for i, v in zip(indices, vs)}
    assert sorted(first) == sorted(second) == list(range(12)) and first != second
    with safe_open(str(result.lora_path), framework="pt") as f:
        meta = f.metadata()
    assert meta["ss_caption_adverb_mode"] == "decorrelate"
    dec = json.loads(meta["ss_caption_decorrelate"])
    assert (dec["variants"], dec["seed"], dec["rate"], dec["rate_target"]) == (3, 4, 0.5, 0.5)
    assert dec["pool"]["words"] and "examples" not in json.loads(meta["ss_caption_filter"])["decorrelate"]
    assert result.cache_stats["text_total"] > 12  # the variants were encoded, not just one caption per image
    config_yaml = (result.output_dir / "config.yaml").read_text()
    assert "decorrelate_variants: 3" in config_yaml and "# captions decorrelated" in config_yaml
    again = load_config(result.output_dir / "config.yaml")  # still a loadable config
    assert again.dataset.adverb_mode == "decorrelate" and again.dataset.decorrelate_rate == 0.5


def test_config_choices_and_rate_check(tmp_path):
    from trainer.training.config import ConfigError, config_from_dict

    cfg = config_from_dict({}, ["dataset.adverb_mode=decorrelate", "dataset.decorrelate_pool=[quickly, slowly]"])
    assert cfg.dataset.adverb_mode == "decorrelate" and cfg.dataset.decorrelate_pool == ["quickly", "slowly"]
    with pytest.raises(ConfigError, match="decorrelate_rate must be a share between 0 and 1"):
        config_from_dict({}, ["dataset.decorrelate_rate=1.5"])
    with pytest.raises(ConfigError, match="decorrelate_variants"):
        config_from_dict({}, ["dataset.decorrelate_variants=0"])


def test_cli_adverbs_decorrelate(tmp_path, capsys, nlp):
    from trainer.__main__ import main

    src = tmp_path / "c.txt"
    src.write_text("a very large dog sitting on the grass\n\na cat running on the road\n")
    assert main(["adverbs", str(src), "--mode", "decorrelate", "--variants", "3", "--rate", "1", "--json",
                 "--no-cache", "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 3 and lines[1]["text"] == "" and all(len(x["variants"]) == 3 for x in lines[::2])
    assert lines[0]["removed"][0]["text"] == "very" and "decorrelate: 2 captions x 3 variants" in err
    assert main(["adverbs", str(src), "--mode", "decorrelate", "--remove-category", "spatial", "--no-cache"]) == 2
    assert "apply to the filter modes only" in capsys.readouterr().err


def test_prepare_writes_variants_and_a_report(tmp_path, coco_root, nlp):
    from trainer.captions.captionset import CaptionSet
    from trainer.captions.prepare import prepare

    path = prepare(coco_root, tmp_path / "processed", "train2014", "decorrelate", variants=2, rate=0.5, seed=3,
                   workers=1, cache_dir=False)
    assert path == tmp_path / "processed" / "train2014_decorrelate" / "captions.jsonl"
    cs = CaptionSet.load(path)
    assert all(len(r.variants) == 2 for r in cs.records)
    d = cs.provenance["adverb_filter"]["decorrelate"]
    assert (d["variants"], d["rate"], d["seed"]) == (2, 0.5, 3) and cs.provenance["prepare"]["mode"] == "decorrelate"
    report = json.loads((path.parent / "report.json").read_text())
    assert report["decorrelate"]["rate_target"] == 0.5
    md = (path.parent / "report.md").read_text()
    assert "## Decorrelation (mode decorrelate)" in md and "decorrelate: " in md


def test_webui_card_names_the_decorrelation():
    from sdwebui.jobs import MODES, user_metadata

    assert "decorrelate" in MODES
    dec = {"mode": "decorrelate", "variants": 4, "seed": 7, "rate_target": 0.02, "rate_source": "dataset",
           "pool": {"source": "dataset", "words": {"degree/pre-adj": {"very": 3}, "manner/pre-verb": {"slowly": 1}}}}
    meta = {"ss_training_comment": "UNet-only LoRA on adverb-filtered captions (sd-adverb-lora)",
            "ss_caption_adverb_mode": "decorrelate", "ss_caption_decorrelate": json.dumps(dec)}
    card = user_metadata({"metadata": meta, "family": "SD1"})["description"]
    assert "Decorrelated adverbs: 4 variants per caption, seed 7, rate 0.02 (dataset), pool slowly, very." in card
    assert "Decorrelated" not in user_metadata({"metadata": {**meta, "ss_caption_decorrelate": "{}"}})["description"]
