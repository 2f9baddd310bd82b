"""Fixtures for the training tests: a caption set built straight from the generated COCO json.

Built here (not through `trainer.captions.coco`) so the training tests exercise only the trainer.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def caption_set_from_coco(root: Path, split: str = "train2014", per_image: int = 1):
    from trainer.captions.captionset import CaptionRecord, CaptionSet

    doc = json.loads((root / "annotations" / f"captions_{split}.json").read_text())
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    records, seen = [], {}
    for a in doc["annotations"]:
        if seen.get(a["image_id"], 0) >= per_image:
            continue
        seen[a["image_id"]] = seen.get(a["image_id"], 0) + 1
        path = root / "images" / split / files[a["image_id"]]
        records.append(CaptionRecord(str(path), a["caption"], source_id=f"coco:{a['id']}"))
    return CaptionSet(tuple(records), {"source": "test", "filter": {"mode": "none"}})


@pytest.fixture(scope="session")
def train_captions(coco_root):
    """12 images, one caption each."""
    return caption_set_from_coco(coco_root)


def tiny_config(tmp_path: Path, *overrides: str):
    """A few-step CPU config on the embedded tiny SD1.5 model at 64 px."""
    from trainer.training.config import config_from_dict

    base = [
        "model_name=tiny-sd15", "dataset.resolution=64", "dataset.adverb_mode=none",
        f"logging.output_dir={tmp_path / 'run'}", f"dataset.cache_dir={tmp_path / 'cache'}",
        "train.max_train_steps=4", "train.train_batch_size=2", "train.learning_rate=1e-3",
        "logging.save_steps=2", "logging.log_steps=1", "logging.tensorboard=false",
    ]
    return config_from_dict({}, [*base, *overrides])
