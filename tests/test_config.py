"""Config loading: defaults, YAML + dotted overrides, and every error a user can make."""
from __future__ import annotations

import pytest

from trainer.training.config import (ConfigError, TrainConfig, config_from_dict, example_config_path, load_config,
                            option_docs)


def test_every_option_has_a_default_and_a_doc():
    docs = option_docs()
    for key in ("model_name", "dataset.raw_root", "dataset.split", "dataset.resolution", "train.max_train_steps",
                "train.learning_rate", "train.lr_scheduler", "train.train_batch_size",
                "train.gradient_accumulation_steps", "train.mixed_precision", "train.enable_xformers",
                "train.gradient_checkpointing", "train.lora_rank", "train.lora_alpha", "train.seed",
                "logging.output_dir", "logging.save_steps"):
        assert key in docs
    assert all(doc.strip() for _, doc in docs.values()), [k for k, (_, d) in docs.items() if not d.strip()]


def test_yaml_plus_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name: some/model\ntrain:\n  learning_rate: 1e-4\n  lora_rank: 8\n"
                    "validation:\n  prompts: [a cat, a dog]\n")
    cfg = load_config(path, ["train.lora_rank=16", "logging.output_dir=runs/x", "dataset.random_flip=true"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.model_name == "some/model"
    assert cfg.train.learning_rate == 1e-4  # YAML 1.1 reads "1e-4" as a string; it is coerced
    assert cfg.train.lora_rank == 16 and cfg.logging.output_dir == "runs/x" and cfg.dataset.random_flip is True
    assert cfg.validation.prompts == ["a cat", "a dog"]
    assert cfg.train.max_train_steps == TrainConfig().train.max_train_steps  # untouched keys keep defaults
    # The resolved config round-trips through config.yaml.
    assert config_from_dict(__import__("yaml").safe_load(cfg.to_yaml())) == cfg


@pytest.mark.parametrize("name", ["train_config.yaml", "sd21_768_v.yaml"])
def test_example_configs_load(name):
    cfg = load_config(example_config_path(name))
    if name == "train_config.yaml":
        assert 50 <= cfg.train.max_train_steps <= 100
        assert cfg.train.train_batch_size * cfg.train.gradient_accumulation_steps >= 16
        assert cfg.train.learning_rate <= 1e-4
    else:
        assert cfg.train.prediction_type == "v_prediction" and cfg.dataset.resolution == 768


@pytest.mark.parametrize("overrides, message", [
    (["train.learnig_rate=1e-4"], "unknown key 'train.learnig_rate' (did you mean 'train.learning_rate'?)"),
    (["trian.seed=1"], "unknown key 'trian' (did you mean 'train'?)"),
    (["lora_rank=4"], "did you mean 'train.lora_rank'?"),
    (["train.lora_rank=four"], "train.lora_rank must be int, got 'four'"),
    (["train.enable_xformers=maybe"], "train.enable_xformers must be bool"),
    (["train.learning_rate=fast"], "train.learning_rate must be float"),
    (["validation.prompts=[1, 2]"], "validation.prompts must be list"),
    (["train.mixed_precision=fp8"], "train.mixed_precision is 'fp8'; choose one of 'auto', 'no', 'fp16', 'bf16'"),
    (["train.lr_scheduler=exp"], "train.lr_scheduler is 'exp'"),
    (["train.lora_targets=all"], "train.lora_targets is 'all'"),
    (["dataset.adverb_mode=some"], "dataset.adverb_mode is 'some'"),
    (["train.prediction_type=sample"], "train.prediction_type is 'sample'"),
    (["train.max_train_steps=0"], "train.max_train_steps must be > 0"),
    (["train.learning_rate=0"], "train.learning_rate must be > 0"),
    (["logging.save_steps=-1"], "logging.save_steps must be >= 0"),
    (["dataset.crop=random"], "set dataset.cache_latents=false"),
    (["dataset.bucket_step=12"], "dataset.bucket_step must be a multiple of 8"),
    (["dataset.raw_root=a", "dataset.processed_root=b"], "not both"),
    (["logging.name=a/b"], "logging.name must be a plain file name"),
    (["model_name="], "model_name is empty"),
    (["train"], "write it as dotted.key=value"),
    (["train.seed.x=1"], "train.seed is an option, not a section (no such key: train.seed.x)"),
    (["train=3"], "train must be a mapping"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict({}, overrides)
    assert message in str(e.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("logging:\n  save_step: 10\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'logging.save_step' \(did you mean 'logging.save_steps'"):
        load_config(typo)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping"):
        load_config(top)


def test_random_crop_allowed_without_cache():
    cfg = config_from_dict({}, ["dataset.crop=random", "dataset.cache_latents=false"])
    assert cfg.dataset.crop == "random"


@pytest.mark.parametrize("word", ["no", "No", "off", "false"])
def test_yaml11_boolean_words_mean_the_choice(tmp_path, word):
    """`mixed_precision: no` (accelerate's own spelling) is the string 'no', on the command line and in YAML."""
    assert config_from_dict({}, [f"train.mixed_precision={word}"]).train.mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  mixed_precision: {word}\n")
    assert load_config(path).train.mixed_precision == "no"


def test_a_boolean_for_a_choice_without_that_word_says_to_quote_it(tmp_path):
    with pytest.raises(ConfigError) as e:
        config_from_dict({}, ["train.mixed_precision=yes"])
    assert str(e.value).startswith("override 'train.mixed_precision=yes': train.mixed_precision must be str, got True")
    assert "quote the word" in str(e.value) and "'no', 'fp16', 'bf16'" in str(e.value)


def test_errors_name_the_override_not_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lora_rank: 8\n")
    cases = {"train.mixed_precision=fp8": "train.mixed_precision is 'fp8'", "train.lora_rank=four": "must be int",
             "train.max_train_steps=0": "must be > 0", "train.lerning_rate=1": "unknown key 'train.lerning_rate'"}
    for override, message in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config(path, [override])
        assert str(e.value).startswith(f"override {override!r}: ") and message in str(e.value), str(e.value)
    path.write_text("train:\n  mixed_precision: fp8\n")
    with pytest.raises(ConfigError, match=f"^{path}: train.mixed_precision is 'fp8'"):
        load_config(path, ["train.lora_rank=8"])
