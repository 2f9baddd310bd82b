"""Base-model loading: diffusers folder, single file, separate VAE / text encoder, bad inputs."""
from __future__ import annotations

import pytest
import torch
from fixtures_sampling import tiny_sd2_single_file, tiny_sd15_single_file  # noqa: F401

from trainer.models.base import load_base_model
from trainer.models.tiny import build_tiny_pipeline



def test_diffusers_folder(tiny_sd2_dir):
    base = load_base_model(str(tiny_sd2_dir))
    assert (base.family, base.prediction_type) == ("sd2", "v_prediction")
    base = load_base_model(str(tiny_sd2_dir), prediction_type="epsilon")
    assert base.prediction_type == base.pipe.scheduler.config.prediction_type == "epsilon"


def test_single_file_through_load_base_model(tiny_sd2_single_file, tiny_sd2_dir):
    base = load_base_model(str(tiny_sd2_single_file), torch_dtype="bf16")
    assert (base.family, base.prediction_type, base.source) == ("sd2", "v_prediction", str(tiny_sd2_single_file))
    assert base.pipe.unet.dtype == torch.bfloat16
    ref = load_base_model(str(tiny_sd2_dir), torch_dtype=torch.bfloat16).pipe
    assert torch.equal(ref.unet.conv_in.weight, base.pipe.unet.conv_in.weight)


@pytest.mark.parametrize("as_path", [True, False])
def test_separate_vae_and_text_encoder(tiny_sd15_single_file, tmp_path, as_path):
    other = build_tiny_pipeline("sd15", seed=7)
    if as_path:
        other.save_pretrained(tmp_path / "other")
        vae, te = tmp_path / "other" / "vae", tmp_path / "other"
    else:
        vae, te = other.vae, other.text_encoder
    pipe = load_base_model(str(tiny_sd15_single_file), vae=vae, text_encoder=te).pipe
    assert torch.equal(pipe.vae.decoder.conv_out.weight, other.vae.decoder.conv_out.weight)
    final_norm = lambda te: getattr(te, "text_model", te).final_layer_norm.weight  # transformers 5 flattened it
    assert torch.equal(final_norm(pipe.text_encoder), final_norm(other.text_encoder))
    own = load_base_model(str(tiny_sd15_single_file)).pipe
    assert not torch.equal(own.vae.decoder.conv_out.weight, other.vae.decoder.conv_out.weight)


def test_embedded_tiny_names_are_the_demo_weights(tiny_sd2_dir):
    base = load_base_model("tiny-sd2")
    assert (base.family, base.prediction_type) == ("sd2", "v_prediction")
    ref = load_base_model(str(tiny_sd2_dir)).pipe  # the fixture saves build_tiny_pipeline("sd2") too
    assert torch.equal(base.pipe.unet.conv_out.weight, ref.unet.conv_out.weight)


def test_bad_inputs_name_the_problem(tmp_path, tiny_sd15_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        load_base_model(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt: not a model"):
        load_base_model(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="prediction_type='v'"):
        load_base_model(str(tiny_sd15_dir), prediction_type="v")
    with pytest.raises(FileNotFoundError, match="vae=.*no config.json"):
        load_base_model(str(tiny_sd15_dir), vae=tmp_path / "empty")
