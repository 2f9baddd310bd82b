"""Shared offline fixtures: the tiny SD1.5/SD2 pipelines and a generated COCO-format dataset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Tests must never reach a hub; fail fast instead of hanging on a network call.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run torch on one thread: the tiny models' ops are too small to split, and on a shared 2-core
    machine a descheduled OpenMP worker makes every op wait for it (measured 10-100x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SD1.5-layout pipeline saved as a diffusers folder."""
    from trainer.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd15", "sd15")


@pytest.fixture(scope="session")
def tiny_sd2_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SD2.x-layout (linear proj, v-prediction) pipeline as a diffusers folder."""
    from trainer.models.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd2", "sd2")


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    """A generated COCO-format dataset: images/train2014/*.jpg and annotations/captions_train2014.json."""
    from trainer.captions.sample_dataset import make_sample_coco

    return make_sample_coco(tmp_path_factory.mktemp("coco"), n_images=12)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (real COCO captions, UD treebank); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} does not exist (only in the project's workspace)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def nlp():
    """spaCy's English tagger, loaded per module (an AdverbFilter disables its lemmatizer in place); skips
    where the model is not installed, naming the fix."""
    from trainer.captions.adverbs import SpacyModelMissing, load_spacy_model

    try:
        return load_spacy_model()
    except SpacyModelMissing as e:
        pytest.skip(str(e))
