"""Every LoRA reader takes a training run folder or a checkpoint folder: the README's command lines, run verbatim."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from fixtures_train import tiny_config, train_captions  # noqa: F401

import convert
from convert.__main__ import EXAMPLES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_captions):  # noqa: F811
    """A real 2-step tiny training run in `<tmp>/outputs/run` (checkpoint-1, checkpoint-2, final LoRA), copied to `out`."""
    from trainer.training.train import train

    root = tmp_path_factory.mktemp("readme")
    cfg = tiny_config(root, f"logging.output_dir={root / 'outputs' / 'run'}", "train.max_train_steps=2",
                      "logging.save_steps=1")
    result = train(cfg, caption_set=train_captions, progress=False)
    shutil.copytree(result.output_dir, root / "out")  # the --help examples say out/checkpoint-500
    return result.output_dir


def _cli(root: Path, line: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = line.split()
    if argv[0] == "python":  # the interpreter running the tests, whether or not its venv is activated
        argv[0] = sys.executable
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _lines(text: str, tool: str) -> list[str]:
    """The command lines of `text` that run `tool`, comments cut, checkpoint steps set to this run's last (2)."""
    out = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith(f"python -m {tool} ") and "checkpoint-" in line:
            out.append(re.sub(r"checkpoint-\d+", "checkpoint-2", line))
    return out


def test_readme_convert_line_converts_a_checkpoint_folder(run_dir):
    root = run_dir.parents[1]
    (line,) = _lines((REPO / "README.md").read_text(), "convert")
    assert line == "python -m convert --to_webui outputs/run/checkpoint-2"
    done = _cli(root, line)
    assert done.returncode == 0, done.stderr
    written = root / "outputs" / "run" / "checkpoint-2_webui.safetensors"
    assert str(written.relative_to(root)) in done.stdout
    assert convert.verify(written, run_dir / "checkpoint-2" / "adapter").ok


def test_help_examples_with_a_checkpoint_folder_run(run_dir):
    root = run_dir.parents[1]
    lines = _lines(EXAMPLES, "convert")
    assert lines == ["python -m convert --to_webui out/checkpoint-2",
                     "python -m convert --verify out/checkpoint-2 my_lora.safetensors"]
    convert.save_webui(convert.load_any(run_dir / "checkpoint-2" / "adapter"), root / "my_lora.safetensors")
    for line in lines:
        done = _cli(root, line)
        assert done.returncode == 0, f"{line}: {done.stderr}"
    assert "OK:" in done.stdout


def test_a_run_folder_gives_its_final_lora_and_says_which(run_dir):
    root = run_dir.parents[1]
    done = _cli(root, "python -m convert --inspect outputs/run")
    assert done.returncode == 0, done.stderr
    assert "file:     outputs/run/adapter\n" in done.stdout
    assert done.stderr == ("warning: outputs/run: holds 2 checkpoints (checkpoint-1, checkpoint-2); "
                           "using the final LoRA: outputs/run/adapter\n")
    done = _cli(root, "python -m convert --verify outputs/run outputs/run/adverb_lora.safetensors")
    assert done.returncode == 0 and "OK:" in done.stdout, done.stdout + done.stderr


def test_an_unfinished_run_gives_its_newest_checkpoint(run_dir, tmp_path):
    unfinished = tmp_path / "run"
    for ck in ("checkpoint-1", "checkpoint-2"):
        (unfinished / ck).mkdir(parents=True)
        (unfinished / ck / "adverb_lora.safetensors").write_bytes((run_dir / ck / "adverb_lora.safetensors").read_bytes())
    with pytest.warns(UserWarning, match=r"newest checkpoint's LoRA .*checkpoint-2[/\\]adverb_lora\.safetensors"):
        lora = convert.load_any(unfinished)
    assert lora.source == str(unfinished / "checkpoint-2" / "adverb_lora.safetensors")
    (unfinished / "checkpoint-2" / "other.safetensors").write_bytes(b"x")
    with pytest.raises(convert.LoraFormatError, match="several LoRA files"):
        convert.load_any(unfinished / "checkpoint-2")
    with pytest.raises(convert.LoraFormatError, match="checkpoint folder or a training run folder"):
        convert.load_any(tmp_path)


def test_sample_eval_and_lora_ref_take_run_and_checkpoint_folders(run_dir):
    from trainer.models.lora_apply import load_lora
    from trainer.models.lora_ref import LoraRef

    final = convert.load_any(run_dir / "adapter")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint folder is not ambiguous: no warning
        ck = load_lora(run_dir / "checkpoint-2")
    assert ck.source == str(run_dir / "checkpoint-2" / "adapter")
    with pytest.warns(UserWarning, match="the final LoRA"):
        whole = load_lora(run_dir)  # what `sample --lora` and `eval-adverbs --lora` read with
    assert whole.source == final.source
    with pytest.warns(UserWarning, match="the final LoRA"):
        ref = LoraRef.from_file(run_dir)
    assert ref.rank == final.common_rank_alpha()[0] and ref.format == "peft"


def test_sample_command_takes_a_checkpoint_folder(run_dir, tmp_path):
    from trainer.__main__ import main

    out = tmp_path / "img.png"
    assert main(["sample", "--model_name", "tiny-sd15", "--lora", str(run_dir / "checkpoint-2"), "--prompt", "a dog",
                 "--num_inference_steps", "2", "--seed", "1", "--output", str(out)]) == 0
    from PIL import Image

    # sd-webui finds the LoRA by its file name: the trainer's webui file, not the folder given
    assert "<lora:adverb_lora:1>" in Image.open(out).info["parameters"]


def test_webui_name_is_the_trainers_file_name_for_every_folder(run_dir, tmp_path):
    from convert.locate import webui_name

    import yaml

    name = yaml.safe_load((run_dir / "config.yaml").read_text())["logging"]["name"]  # the run's logging.name
    for where in (run_dir, run_dir / "checkpoint-2", run_dir / "checkpoint-2" / "adapter", run_dir / "adapter"):
        assert webui_name(where) == name, where
    assert webui_name(run_dir / f"{name}.safetensors") == name
    lone = tmp_path / "my_style" / "adapter"
    shutil.copytree(run_dir / "adapter", lone)  # an adapter with no webui file beside it: the folder's name
    assert webui_name(lone) == "my_style"


def test_apply_lora_node_takes_a_run_folder(run_dir):
    from test_nodes import pack as pack_fixture

    pack = pack_fixture.__wrapped__()
    apply = pack.NODE_CLASS_MAPPINGS["ApplyLoRA"]
    with pytest.warns(UserWarning, match="the final LoRA"):
        sd = apply.load_state_dict(run_dir)
    want = convert.to_webui_state_dict(convert.load_any(run_dir / "adapter"))
    assert sd.keys() == want.keys()
