"""Caption loaders: COCO, folders (.txt / captions.json / metadata.jsonl), the dispatcher, bad data."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from trainer.captions.load import load_captions
from trainer.captions.captionset import CaptionSet
from trainer.captions.coco import find_coco_files, group_by_image, load_coco, pick_caption_per_epoch
from trainer.captions.folders import load_folder
from trainer.captions.load_report import DataError


@pytest.fixture
def coco_copy(coco_root, tmp_path) -> Path:
    """A private copy of the generated COCO set, free to damage."""
    return Path(shutil.copytree(coco_root, tmp_path / "coco"))


def _ann(root: Path) -> Path:
    return root / "annotations" / "captions_train2014.json"


def test_coco_caption_choices(coco_root):
    doc = json.loads(_ann(coco_root).read_text())
    n_img, n_ann = len(doc["images"]), len(doc["annotations"])
    all_ = load_coco(coco_root, "train2014")
    assert len(all_) == n_ann and all(Path(r.image_path).is_file() for r in all_)
    assert {r.source_id for r in all_} == {f"coco:{a['id']}" for a in doc["annotations"]}
    first = load_coco(coco_root, "train", captions="first")  # "train" finds train2014
    assert len(first) == n_img and len({r.image_path for r in first}) == n_img
    first_caption = {}
    for a in doc["annotations"]:
        first_caption.setdefault(a["image_id"], a["caption"])
    assert {r.caption for r in first} == set(first_caption.values())
    rnd = load_coco(coco_root, captions="random")
    assert len(rnd) == n_ann and rnd.provenance["captions"] == "random"
    assert len(group_by_image(rnd)) == n_img


def test_pick_caption_per_epoch_is_reproducible_and_varies(coco_root):
    s = load_coco(coco_root, captions="random")
    e0, e0b, e1 = (pick_caption_per_epoch(s, e, seed=3) for e in (0, 0, 1))
    assert e0 == e0b
    assert len(e0) == len({r.image_path for r in e0}) == len(group_by_image(s))
    assert [r.source_id for r in e0] != [r.source_id for r in e1]
    # over many epochs every caption of an image gets its turn
    seen = Counter(r.source_id for e in range(60) for r in pick_caption_per_epoch(s, e))
    assert len(seen) == len(s)


def test_max_samples_is_a_seeded_subset(coco_root):
    a = load_coco(coco_root, max_samples=7, seed=1)
    b = load_coco(coco_root, max_samples=7, seed=1)
    c = load_coco(coco_root, max_samples=7, seed=2)
    assert len(a) == 7 and a.records == b.records and a.records != c.records
    full = [r.source_id for r in load_coco(coco_root)]
    assert [full.index(r.source_id) for r in a] == sorted(full.index(r.source_id) for r in a)  # order kept
    imgs = load_coco(coco_root, captions="random", max_samples=3)
    assert len(group_by_image(imgs)) == 3


def test_coco_bad_data_is_counted_and_skipped(coco_copy):
    ann = _ann(coco_copy)
    doc = json.loads(ann.read_text())
    imgs = doc["images"]
    (coco_copy / "images" / "train2014" / imgs[0]["file_name"]).unlink()  # missing image
    (coco_copy / "images" / "train2014" / imgs[1]["file_name"]).write_bytes(b"not a jpeg")  # unreadable
    doc["annotations"][12]["caption"] = "   "  # empty caption
    doc["annotations"].append(dict(doc["annotations"][13]))  # duplicate annotation id
    doc["annotations"].append({"id": 999999, "image_id": 424242, "caption": "orphan"})  # unknown image
    doc["annotations"].append({"id": 999998})  # malformed entry
    ann.write_text(json.dumps(doc))
    s = load_coco(coco_copy)
    rep = s.provenance["load_report"]
    assert rep["counts"] == {"missing_image": 1, "unreadable_image": 1, "empty_caption": 1, "duplicate_id": 1,
                             "unknown_image": 1, "malformed_entry": 1}
    assert imgs[0]["file_name"] in rep["examples"]["missing_image"][0]
    bad_paths = {imgs[0]["file_name"], imgs[1]["file_name"]}
    assert not any(Path(r.image_path).name in bad_paths for r in s)
    n_good_images = len(imgs) - 2
    assert len(s) == len(json.loads(_ann(coco_copy).read_text())["annotations"]) - 3 - 5 * 2 - 1
    assert len(group_by_image(s)) == n_good_images
    with pytest.raises(DataError, match=r"annotations\[12\]: empty caption.*strict=False"):
        load_coco(coco_copy, strict=True)


def test_coco_malformed_json_names_the_file(coco_copy):
    _ann(coco_copy).write_text('{"images": [1, 2,,]}')
    with pytest.raises(DataError, match=r"captions_train2014\.json: malformed JSON at line 1"):
        load_coco(coco_copy)
    with pytest.raises(FileNotFoundError, match="captions_val2017"):
        find_coco_files(coco_copy, "val2017")


def test_coco_explicit_paths_and_flat_layout(coco_root, tmp_path):
    flat = tmp_path / "flat"
    shutil.copytree(coco_root / "images" / "train2014", flat / "train2014")
    shutil.copy(_ann(coco_root), flat / "captions_train2014.json")
    s = load_coco(flat, "train2014")
    t = load_coco(annotation_file=_ann(coco_root), image_dir=coco_root / "images" / "train2014")
    assert [r.caption for r in s] == [r.caption for r in t] and len(s) > 0


def test_real_val2017_annotations(shared_data):
    f = shared_data / "coco" / "captions_val2017.json"
    s = load_coco(annotation_file=f, check_images=False)
    doc = json.loads(f.read_text())
    assert len(s) == len(doc["annotations"])
    assert len(group_by_image(s)) == len(doc["images"])
    assert all(r.caption == r.caption.strip() and "\n" not in r.caption for r in s)
    first = load_coco(annotation_file=f, check_images=False, captions="first", max_samples=100)
    assert len(first) == 100 and first.provenance["annotation_sha256"] == s.provenance["annotation_sha256"]


def _img(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_folder_txt_captions(tmp_path):
    _img(tmp_path / "a.jpg")
    (tmp_path / "a.txt").write_text("A red dog.\n")
    _img(tmp_path / "sub" / "b.png")
    (tmp_path / "sub" / "b.txt").write_text("A  blue\ncat.")
    _img(tmp_path / "c.jpg")  # no caption file
    _img(tmp_path / "d.jpg")
    (tmp_path / "d.txt").write_text("  ")
    s = load_folder(tmp_path)
    assert sorted((Path(r.image_path).name, r.caption) for r in s) == [("a.jpg", "A red dog."), ("b.png", "A blue cat.")]
    assert s.provenance["layout"] == "txt"
    assert s.provenance["load_report"]["counts"] == {"missing_caption": 1, "empty_caption": 1}
    with pytest.raises(DataError, match="c.jpg"):
        load_folder(tmp_path, strict=True)


def test_folder_captions_json(tmp_path):
    for n in ("x", "y", "z"):
        _img(tmp_path / f"{n}.jpg")
    (tmp_path / "captions.json").write_text(json.dumps({"x": "An apple.", "y.jpg": "A pear.", "ghost": "Nothing."}))
    s = load_folder(tmp_path)
    assert sorted(r.caption for r in s) == ["A pear.", "An apple."]
    assert s.provenance["load_report"]["counts"] == {"missing_image": 1, "missing_caption": 1}
    (tmp_path / "captions.json").write_text("{oops")
    with pytest.raises(DataError, match="captions.json: malformed JSON"):
        load_folder(tmp_path)


def test_folder_imagefolder_metadata(tmp_path):
    _img(tmp_path / "train" / "1.png")
    _img(tmp_path / "train" / "2.png")
    lines = [
        json.dumps({"file_name": "1.png", "text": "One dog."}),
        json.dumps({"file_name": "2.png", "caption": "Two dogs.", "text": "Two dogs."}),
        "{not json",
        json.dumps({"file_name": "3.png", "text": "Missing."}),
        json.dumps({"file_name": "1.png", "text": "Again."}),
        json.dumps({"file_name": "2.png"}),
    ]
    (tmp_path / "train" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    s = load_folder(tmp_path)
    assert [r.caption for r in s] == ["One dog.", "Two dogs."]
    assert s.provenance["load_report"]["counts"] == {"malformed_json": 1, "missing_image": 1, "duplicate_id": 1,
                                                     "malformed_entry": 1}
    assert "metadata.jsonl:3" in s.provenance["load_report"]["examples"]["malformed_json"][0]
    s2 = load_folder(tmp_path, caption_column="caption")
    assert [r.caption for r in s2] == ["Two dogs."]


def test_nothing_usable_is_an_error(tmp_path):
    _img(tmp_path / "a.jpg")
    with pytest.raises(DataError, match="no usable image-caption pairs"):
        load_folder(tmp_path)


def test_dataset_name_without_datasets_package_is_clear(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *a, **kw):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match="pip install datasets"):
        load_folder("someone/some-dataset")


def test_load_captions_dispatch(coco_root, tmp_path):
    by_root = load_captions(coco_root)
    by_file = load_captions(_ann(coco_root))
    assert by_root.provenance["loader"] == by_file.provenance["loader"] == "coco"
    assert [r.caption for r in by_root] == [r.caption for r in by_file]
    saved = by_root.save(tmp_path / "set.jsonl")
    assert load_captions(saved).records == by_root.records
    _img(tmp_path / "f" / "a.jpg")
    (tmp_path / "f" / "a.txt").write_text("A cat.")
    assert load_captions(tmp_path / "f").provenance["loader"] == "folder"
    with pytest.raises(TypeError, match="captions"):
        load_captions(tmp_path / "f", captions="first")
    assert isinstance(load_captions(coco_root, captions="first", max_samples=2), CaptionSet)
