"""Loading a caption set with broken parts: each broken file or entry is named, the rest loads."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from trainer.captions.coco import load_coco
from trainer.captions.folders import load_folder
from trainer.captions.load_report import DataError


@pytest.fixture
def coco_copy(coco_root, tmp_path) -> Path:
    return Path(shutil.copytree(coco_root, tmp_path / "coco"))


def _ann(root: Path) -> Path:
    return root / "annotations" / "captions_train2014.json"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as im:  # the header still opens: a header-only check passes it
        im.size


def test_truncated_images_are_skipped_and_each_named(coco_copy):
    doc = json.loads(_ann(coco_copy).read_text())
    names = [im["file_name"] for im in doc["images"][:7]]  # more than the report's 5 examples of a kind
    for n in names:
        _truncate(coco_copy / "images" / "train2014" / n)
    s = load_coco(coco_copy)
    rep = s.provenance["load_report"]
    assert rep["counts"] == {"unreadable_image": 7}
    assert all(any(n in ex and "truncated" in ex for ex in rep["examples"]["unreadable_image"]) for n in names)
    assert not any(Path(r.image_path).name in names for r in s)
    assert len({r.image_path for r in s}) == len(doc["images"]) - 7
    with pytest.raises(DataError, match=r"image \d+: cannot read image .*truncated"):
        load_coco(coco_copy, strict=True)


def test_truncated_image_in_a_folder_is_named(tmp_path):
    for i in range(3):
        Image.effect_noise((64, 64), 64).convert("RGB").save(tmp_path / f"img{i}.jpg", quality=95)
        (tmp_path / f"img{i}.txt").write_text(f"a noisy picture {i}")
    _truncate(tmp_path / "img1.jpg")
    s = load_folder(tmp_path)
    assert [Path(r.image_path).name for r in s] == ["img0.jpg", "img2.jpg"]
    (ex,) = s.provenance["load_report"]["examples"]["unreadable_image"]
    assert "img1.jpg" in ex


@pytest.mark.parametrize("field,value", [("id", [1, 2]), ("image_id", {"id": 3}), ("id", None)])
def test_coco_annotation_id_that_is_not_a_number_is_named(coco_copy, field, value):
    doc = json.loads(_ann(coco_copy).read_text())
    doc["annotations"][4][field] = value
    _ann(coco_copy).write_text(json.dumps(doc))
    s = load_coco(coco_copy)
    rep = s.provenance["load_report"]
    assert rep["counts"] == {"malformed_entry": 1}
    (ex,) = rep["examples"]["malformed_entry"]
    assert "captions_train2014.json: annotations[4]" in ex and f"field '{field}' must be an integer or a string" in ex
    assert len(s) == len(doc["annotations"]) - 1
    with pytest.raises(DataError, match=rf"annotations\[4\]: field '{field}' must be an integer or a string"):
        load_coco(coco_copy, strict=True)


def test_coco_image_id_that_is_a_list_is_named(coco_copy):
    doc = json.loads(_ann(coco_copy).read_text())
    doc["images"][2]["id"] = [doc["images"][2]["id"]]
    _ann(coco_copy).write_text(json.dumps(doc))
    rep = load_coco(coco_copy).provenance["load_report"]
    assert "captions_train2014.json: images[2]: field 'id' must be an integer or a string, got list" in \
        rep["examples"]["malformed_entry"][0]
