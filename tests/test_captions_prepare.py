"""`prepare`: the processed set, its provenance and report, and the `python -m trainer prepare` command."""
from __future__ import annotations

import json

import pytest

from trainer.captions.captionset import CaptionSet


@pytest.fixture(scope="module")
def prepared(coco_root, tmp_path_factory):
    pytest.importorskip("spacy")
    from trainer.captions.adverbs import SpacyModelMissing
    from trainer.captions.prepare import prepare

    out = tmp_path_factory.mktemp("processed")
    try:
        path = prepare(coco_root, out, "train", "safe", cache_dir=out / "cache", workers=1)
    except SpacyModelMissing as e:
        pytest.skip(str(e))
    return path


def test_prepare_writes_set_provenance_and_report(prepared, coco_root):
    s = CaptionSet.load(prepared)
    raw = json.loads((coco_root / "annotations" / "captions_train2014.json").read_text())
    assert len(s) == len(raw["annotations"])
    changed = [r for r in s if r.caption != r.original]
    assert changed and all(r.original is not None for r in s)
    assert all("next to" in r.caption for r in s if "next to" in r.original)
    prov = json.loads((prepared.parent / "provenance.json").read_text())
    assert prov["source_files"][0]["path"].endswith("captions_train2014.json") and len(prov["source_files"][0]["sha256"]) == 64
    assert prov["adverb_filter"]["mode"] == "safe" and prov["adverb_filter"]["spacy_version"]
    assert prov == s.provenance
    report = json.loads((prepared.parent / "report.json").read_text())
    assert report["changed"] == len(changed) and report["captions"] == len(s)
    assert report["changed_percent"] == round(100 * len(changed) / len(s), 2)
    assert len(report["examples"]) == min(30, len(changed))
    top = dict(report["top_removed"])
    assert top and all(any(w == x.text.lower() for r in s for x in r.removed) for w in top)
    md = (prepared.parent / "report.md").read_text()
    assert "Top removed words" in md and f"({report['changed_percent']} %)" in md
    # removals per category add up, each category's words are what was removed as it
    cats = report["removed_by_category"]
    assert sum(cats.values()) == report["removed_words"] and "degree" in cats
    assert all(x.category in cats for r in s for x in r.removed)
    for cat, words in report["top_removed_by_category"].items():
        assert all(any(x.text.lower() == w and x.category == cat for r in s for x in r.removed) for w, _ in words)
    # the visual adverbs safe mode kept are listed ("placed neatly on the grass" keeps "neatly")
    kept = dict(report["kept_visual"])
    assert kept.get("neatly (appearance)", 0) == sum("neatly" in r.caption for r in s) > 0
    assert "Removed per category" in md and "Most frequent visual adverbs kept" in md and "neatly (appearance)" in md


def test_prepare_command(coco_root, tmp_path, capsys):
    from trainer.__main__ import main

    rc = main(["prepare", "--raw_root", str(coco_root), "--processed_root", str(tmp_path), "--split", "train",
               "--mode", "intensifiers", "--captions", "first", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    path = tmp_path / "train_intensifiers" / "captions.jsonl"
    assert str(path) in capsys.readouterr().out
    s = CaptionSet.load(path)
    assert len(s) == len({r.image_path for r in s}) and s.provenance["adverb_filter"]["mode"] == "intensifiers"
    assert main(["prepare", "--raw_root", str(tmp_path / "nope"), "--processed_root", str(tmp_path)]) == 2


def test_prepare_category_switches(coco_root, tmp_path, capsys):
    from trainer.__main__ import main

    rc = main(["prepare", "--raw_root", str(coco_root), "--processed_root", str(tmp_path), "--split", "train",
               "--remove-category", "appearance", "--keep-category", "degree", "--no-image-check", "--no-cache"])
    assert rc == 0
    s = CaptionSet.load(tmp_path / "train_safe" / "captions.jsonl")
    cats = {x.category for r in s for x in r.removed}
    assert "appearance" in cats and "degree" not in cats
    assert not any("neatly" in r.caption for r in s) and any("very" in r.caption for r in s)
    with pytest.raises(SystemExit):
        main(["prepare", "--raw_root", str(coco_root), "--processed_root", str(tmp_path), "--remove-category", "colour"])
