"""ComfyUI node contracts, run outside ComfyUI with real objects (tiny model, generated COCO, spaCy).

The pack is imported the way ComfyUI imports it (path-like package name, relative imports). `comfy` and
`folder_paths` are faked only where a test exercises the host hooks (progress bar, interrupt, folders);
everything else — captions, adverb filter, training, conversion — is the real code.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
import types
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PACK = "sd_adverb_lora_nodes_under_test"
NODE_IDS = ("LoadCOCOCaptions", "CaptionAdverbFilter", "TrainUNetLoRA", "ApplyLoRA")


@pytest.fixture(scope="module")
def pack():
    """The repo imported as ComfyUI does: `<name>/__init__.py` with submodule search, not on sys.path."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, REPO_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(REPO_ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Outside ComfyUI the nodes put models/outputs under $SD_ADVERB_LORA_HOME."""
    monkeypatch.setenv("SD_ADVERB_LORA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class FakeComfy:
    """Just the host hooks the nodes call: ProgressBar (+ global hook), the interrupt flag, folder_paths."""

    def __init__(self, root: Path, on_progress=None):
        self.flag = False
        self.progress: list[tuple[int, int]] = []
        self.on_progress = on_progress
        self.unloaded = 0
        fake = self

        class InterruptProcessingException(Exception):
            pass

        mm = types.ModuleType("comfy.model_management")
        mm.InterruptProcessingException = InterruptProcessingException
        mm.processing_interrupted = lambda: fake.flag
        mm.interrupt_current_processing = lambda value=True: setattr(fake, "flag", value)

        def throw():
            if fake.flag:
                fake.flag = False
                raise InterruptProcessingException()

        mm.throw_exception_if_processing_interrupted = throw
        mm.unload_all_models = lambda: setattr(fake, "unloaded", fake.unloaded + 1)
        mm.soft_empty_cache = lambda force=False: None

        class ProgressBar:  # like comfy.utils.ProgressBar with main.py's hook: every update may raise
            def __init__(self, total, node_id=None):
                self.total = total

            def update_absolute(self, value, total=None, preview=None):
                fake.progress.append((value, total or self.total))
                if fake.on_progress:
                    fake.on_progress(fake, value, total or self.total)
                throw()

        utils = types.ModuleType("comfy.utils")
        utils.ProgressBar = ProgressBar
        comfy = types.ModuleType("comfy")
        comfy.utils, comfy.model_management = utils, mm
        self.texts: list[tuple[str, str]] = []  # (text, node id) shown under the node

        class PromptServer:  # server.PromptServer.instance.send_progress_text, as in ComfyUI's server.py
            instance = types.SimpleNamespace(send_progress_text=lambda text, node_id: fake.texts.append((text, node_id)))

        server = types.ModuleType("server")
        server.PromptServer = PromptServer
        self.modules = {"comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm, "server": server}
        self.InterruptProcessingException = InterruptProcessingException

        dirs = {k: root / k for k in ("checkpoints", "loras", "input", "output")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        fp = types.ModuleType("folder_paths")
        fp.get_filename_list = lambda kind: sorted(p.name for p in dirs[kind].iterdir())
        fp.get_folder_paths = lambda kind: [str(dirs[kind])]
        fp.get_output_directory = lambda: str(dirs["output"])
        fp.get_input_directory = lambda: str(dirs["input"])

        def full_path(kind, name):
            p = dirs[kind] / name
            if not p.is_file():
                raise FileNotFoundError(f"Model in folder '{kind}' with filename '{name}' not found.")
            return str(p)

        fp.get_full_path_or_raise = full_path
        self.modules["folder_paths"] = fp
        self.dirs = dirs


@pytest.fixture
def fake_comfy(tmp_path, monkeypatch):
    def install(on_progress=None):
        fake = FakeComfy(tmp_path / "comfy", on_progress)
        for name, mod in fake.modules.items():
            monkeypatch.setitem(sys.modules, name, mod)
        return fake

    return install


# ------------------------------------------------------------------------------------------ contracts

def _inputs(cls):
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}, f"{cls.__name__}: unknown sections {set(spec)}"
    return spec


def test_node_ids_and_display_names(pack):
    assert tuple(pack.NODE_CLASS_MAPPINGS) == NODE_IDS
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_IDS)


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_input_types_well_formed_with_tooltips(pack, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    spec = _inputs(cls)
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and len(entry) == 2, f"{node_id}.{name}: want (type, options)"
            typ, opts = entry
            assert isinstance(typ, str) or (isinstance(typ, list) and typ and all(isinstance(c, str) for c in typ)), \
                f"{node_id}.{name}: type must be a string or a non-empty list of choices"
            assert isinstance(opts.get("tooltip"), str) and len(opts["tooltip"]) > 10, f"{node_id}.{name}: no tooltip"
            if isinstance(typ, list) and "default" in opts:
                assert opts["default"] in typ, f"{node_id}.{name}: default not among the choices"
            if typ in ("INT", "FLOAT"):
                assert opts["min"] <= opts["default"] <= opts["max"], f"{node_id}.{name}: default outside min/max"
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 40
    assert cls.CATEGORY


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_function_signature_matches_inputs_and_outputs(pack, node_id):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    spec = _inputs(cls)
    fn = getattr(cls, cls.FUNCTION)
    params = inspect.signature(fn).parameters
    names = [p for p in params if p != "self"]
    required, optional = set(spec.get("required", {})), set(spec.get("optional", {})) | set(spec.get("hidden", {}))
    assert required | optional == set(names), f"{node_id}: inputs {required | optional} vs parameters {names}"
    for name in optional:
        assert params[name].default is not inspect.Parameter.empty, f"{node_id}.{name}: optional needs a default"
    assert isinstance(cls.RETURN_TYPES, tuple)
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)


def test_importing_the_pack_registers_no_comfy_core_type_names(pack):
    """Custom types are ours (CAPTION_SET, LORA) or ComfyUI's own spelled exactly (MODEL, CLIP, LORA_MODEL, IMAGE)."""
    known = {"CAPTION_SET", "LORA", "LORA_MODEL", "MODEL", "CLIP", "IMAGE", "STRING", "INT", "FLOAT", "BOOLEAN"}
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        types_used = set(cls.RETURN_TYPES) | {e[0] for s in ("required", "optional") for e in
                                              cls.INPUT_TYPES().get(s, {}).values() if isinstance(e[0], str)}
        assert types_used <= known, types_used - known


# ------------------------------------------------------------------------------------------ captions

def test_load_coco_captions_matches_loader_and_relative_path(pack, coco_root, fake_comfy):
    from trainer.captions.coco import load_coco

    fake = fake_comfy()
    (fake.dirs["input"] / "coco").symlink_to(coco_root, target_is_directory=True)
    node = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]()
    cs, summary = node.load("coco", "train2014", "first", 0, 0)
    direct = load_coco(coco_root, "train2014", captions="first")
    assert [(Path(r.image_path).resolve(), r.caption) for r in cs.records] == \
        [(Path(r.image_path).resolve(), r.caption) for r in direct.records]
    assert len(cs) == 12 and "12 captions of 12 images" in summary
    subset, _ = node.load(str(coco_root / "annotations" / "captions_train2014.json"), "val2017", "all", 7, 3)
    assert len(subset) == 7


def test_load_coco_captions_is_changed_follows_file_content(pack, coco_root, tmp_path):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(coco_root, root)
    cls = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]
    args = (str(root), "train2014", "all", 0, 0)
    first = cls.IS_CHANGED(*args)
    assert cls.IS_CHANGED(*args) == first  # unchanged files: ComfyUI's cache keeps the result
    ann = root / "annotations" / "captions_train2014.json"
    doc = json.loads(ann.read_text())
    doc["annotations"][0]["caption"] = "A dog sits quietly on a red sofa."
    ann.write_text(json.dumps(doc))
    second = cls.IS_CHANGED(*args)
    assert second != first
    image = next((root / "images" / "train2014").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert cls.IS_CHANGED(*args) != second  # an image replaced
    assert cls.IS_CHANGED(str(tmp_path / "nowhere"), "train2014", "all", 0, 0).startswith("missing")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        cls().load(str(tmp_path / "nowhere"), "train2014", "all", 0, 0)


def test_caption_adverb_filter_on_set_and_text(pack, coco_root):
    cs, _ = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]().load(str(coco_root), "train2014", "all", 0, 0)
    node = pack.NODE_CLASS_MAPPINGS["CaptionAdverbFilter"]()
    out, report, text = node.filter("all", "", "", caption_set=cs, text="A man quickly runs down the street.")
    assert text == "A man runs down the street."
    assert len(out) == len(cs)
    changed = [r for r in out.records if r.caption != r.original]
    assert changed, "the generated COCO set has captions with adverbs"
    assert all(r.removed for r in changed)
    assert f"{len(changed)} of {len(cs)} captions changed" in report
    top_word = changed[0].removed[0].text.lower()
    assert top_word in report.split("most removed:")[1]
    assert out.provenance["adverb_filter"]["mode"] == "all"
    kept, _, kept_text = node.filter("all", "quickly", "", caption_set=None, text="A man quickly runs.")
    assert kept_text == "A man quickly runs." and len(kept) == 0


def test_caption_adverb_filter_category_switches(pack, coco_root):
    """The node's category inputs do what the CLI's --remove-category / --keep-category do, and say so."""
    cs, _ = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]().load(str(coco_root), "train2014", "all", 0, 0)
    node = pack.NODE_CLASS_MAPPINGS["CaptionAdverbFilter"]()
    line = "A dog is still sitting together outside."
    assert node.filter("safe", "", "", text=line)[2] == "A dog is sitting together outside."
    assert node.filter("safe", "", "", text=line, remove_categories="spatial")[2] == "A dog is sitting."
    assert node.filter("safe", "", "", text=line, keep_categories="time")[2] == line
    out, report, _ = node.filter("safe", "", "", caption_set=cs, remove_categories="spatial")
    assert out.provenance["adverb_filter"]["remove_categories"] == ["spatial"]
    by_category = out.provenance["adverb_filter"]["removed_by_category"]
    assert by_category and "removed by category: " + ", ".join(f"{c} {k}" for c, k in by_category.items()) in report
    with pytest.raises(ValueError, match="unknown adverb category 'colour'.*degree"):
        node.filter("safe", "", "", text=line, remove_categories="colour")


def test_caption_adverb_filter_decorrelate(pack, coco_root):
    """Mode decorrelate in the node: K variants per record, the report's rate and pool, a prompt left as it is."""
    cs, _ = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]().load(str(coco_root), "train2014", "all", 0, 0)
    node = pack.NODE_CLASS_MAPPINGS["CaptionAdverbFilter"]()
    out, report, text = node.filter("decorrelate", "", "", caption_set=cs, text="A man quickly runs.", variants=3,
                                    rate=1.0, pool="", draw_seed=2)
    assert text == "A man quickly runs." and len(out) == len(cs)
    assert all(len(r.variants) == 3 and r.caption == r.variants[0] for r in out.records)
    info = out.provenance["adverb_filter"]["decorrelate"]
    assert (info["variants"], info["seed"], info["rate"]) == (3, 2, 1.0)
    assert f"decorrelate: {len(cs)} captions x 3 variants, seed 2" in report
    again, _, _ = node.filter("decorrelate", "", "", caption_set=cs, variants=3, rate=1.0, pool="", draw_seed=2)
    assert [r.variants for r in again.records] == [r.variants for r in out.records]
    with pytest.raises(ValueError, match="keep apply to the filter modes only"):
        node.filter("decorrelate", "quickly", "", caption_set=cs)


# ------------------------------------------------------------------------------------------ training

TRAIN_ARGS = dict(ckpt_name="(use model_path)", model_path="tiny-sd15", steps=3, learning_rate=1e-3, batch_size=2,
                  grad_accumulation=1, rank=4, alpha=2.0, resolution=64, precision="fp32", train_seed=1, save_every=0,
                  output_name="node_test_lora")


@pytest.fixture(scope="module")
def small_captions(pack, coco_root):
    cs, _ = pack.NODE_CLASS_MAPPINGS["LoadCOCOCaptions"]().load(str(coco_root), "train2014", "first", 6, 0)
    return cs


def test_train_node_writes_webui_lora_and_comfy_outputs(pack, small_captions, home):
    import torch

    from convert import load_any

    node = pack.NODE_CLASS_MAPPINGS["TrainUNetLoRA"]()
    with torch.inference_mode():  # how ComfyUI calls every node
        lora, lora_model, curve, summary = node.train(small_captions, **TRAIN_ARGS)
    path = home / "loras" / "node_test_lora.safetensors"
    assert Path(lora.path) == path and path.is_file()
    assert (lora.format, lora.rank, lora.alpha, lora.family) == ("webui", 4, 2.0, "sd1")
    assert lora.metadata["ss_steps"] == "3" and lora.metadata["final_step"] == 3
    assert lora.name == "node_test_lora" and "<lora:node_test_lora:1>" in summary
    on_disk = load_any(path)
    assert on_disk.format == "webui"
    again = pack.trainer.models.lora_ref.LoraRef.from_file(path)  # the LORA type rebuilt from the file alone
    assert (again.format, again.rank, again.alpha, again.family) == (lora.format, lora.rank, lora.alpha, lora.family)
    assert again.metadata["ss_steps"] == "3" and again.summary().startswith("node_test_lora (webui)")
    # LORA_MODEL: the same modules in kohya keys (what comfy.lora maps), every alpha kept
    assert all(k.startswith("lora_unet_") for k in lora_model)
    assert len(lora_model) == 3 * len(on_disk.modules)
    assert all(float(v) == 2.0 for k, v in lora_model.items() if k.endswith(".alpha"))
    ups = [v for k, v in lora_model.items() if k.endswith("lora_up.weight")]
    assert any(float(u.abs().max()) > 0 for u in ups), "training left every lora_up at its zero init"
    assert curve.dim() == 4 and curve.shape[0] == 1 and curve.shape[-1] == 3
    assert 0.0 <= float(curve.min()) and float(curve.max()) <= 1.0 and float(curve.std()) > 0


def test_train_node_takes_an_sdxl_checkpoint_from_the_checkpoints_folder(pack, small_captions, fake_comfy):
    """An SDXL single file (SGM layout) chosen in ckpt_name trains; the LoRA is SDXL-tagged, kohya SDXL keys."""
    import torch

    from trainer.models.single_file import save_single_file
    from trainer.models.tiny import build_tiny_pipeline

    fake = fake_comfy()
    save_single_file(build_tiny_pipeline("sdxl"), fake.dirs["checkpoints"] / "tiny_sdxl.safetensors", save_config=True)
    node = pack.NODE_CLASS_MAPPINGS["TrainUNetLoRA"]()
    args = dict(TRAIN_ARGS, ckpt_name="tiny_sdxl.safetensors", model_path="", steps=2, output_name="sdxl_lora")
    with torch.inference_mode():
        lora, lora_model, _, summary = node.train(small_captions, **args)
    assert lora.family == "sdxl" and "family sdxl" in summary
    assert lora.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert Path(lora.path) == fake.dirs["loras"] / "sdxl_lora.safetensors"
    assert any(k.startswith("lora_unet_input_blocks_4_1_transformer_blocks_") for k in lora_model)
    assert not any("down_blocks" in k for k in lora_model)


def test_precision_defaults_to_auto_in_node_and_shipped_workflows(pack, tmp_path):
    """A CPU-only ComfyUI must not get fp16 by default (minutes per step); auto picks per device."""
    train_node = pack.NODE_CLASS_MAPPINGS["TrainUNetLoRA"]
    choices, opts = train_node.INPUT_TYPES()["required"]["precision"]
    assert opts["default"] == "auto" and "auto" in choices
    cfg = pack.nodes.train_lora.build_config("tiny-sd15", tmp_path, {**TRAIN_ARGS, "precision": "auto",
                                                                     "seed": 1, "save_every": 0, "lora_targets": "attention"})
    assert cfg.train.mixed_precision == "auto"
    api = json.loads((REPO_ROOT / "workflows" / "adverb_lora_api.json").read_text())
    assert [n["inputs"]["precision"] for n in api.values() if n["class_type"] == "TrainUNetLoRA"] == ["auto"]
    ui = json.loads((REPO_ROOT / "workflows" / "adverb_lora.json").read_text())
    widgets = [n["widgets_values"] for n in ui["nodes"] if n["type"] == "TrainUNetLoRA"]
    assert len(widgets) == 1 and "auto" in widgets[0] and "fp16" not in widgets[0]


def test_train_node_refuses_to_overwrite_a_foreign_lora(pack, small_captions, home):
    from safetensors.torch import save_file
    import torch

    (home / "loras").mkdir(parents=True)
    foreign = home / "loras" / "someone_else.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    node = pack.NODE_CLASS_MAPPINGS["TrainUNetLoRA"]()
    with pytest.raises(FileExistsError, match="someone_else"):
        node.train(small_captions, **{**TRAIN_ARGS, "steps": 1, "output_name": "someone_else"})
    with pytest.raises(ValueError, match="output_name"):
        node.train(small_captions, **{**TRAIN_ARGS, "output_name": "../escape"})


def test_train_node_progress_and_cancel_keeps_checkpoint_and_resumes(pack, small_captions, fake_comfy):
    """Cancel pressed after step 2 is shown: stop within a step, keep a usable checkpoint, interrupt."""
    from convert import load_any

    def press_cancel_after_step_2(fake, value, total):
        if (value, total) == (2, 5):
            fake.flag = True  # what POST /interrupt does; the hook itself then raises

    fake = fake_comfy(press_cancel_after_step_2)
    node = pack.NODE_CLASS_MAPPINGS["TrainUNetLoRA"]()
    args = {**TRAIN_ARGS, "steps": 5, "batch_size": 1, "output_name": "cancelled", "unique_id": "7"}
    with pytest.raises(fake.InterruptProcessingException):
        node.train(small_captions, **args)
    assert fake.unloaded == 1, "ComfyUI's loaded models were not freed before training"
    # Set-up is shown before step 1: the model load, then a bar over the 6 images + 6 captions being encoded.
    encoding, steps = fake.progress[:-2], fake.progress[-2:]
    assert steps == [(1, 5), (2, 5)]
    assert encoding[0] == (0, 12) and encoding[-1] == (12, 12) and all(t == 12 for _, t in encoding)
    texts = [text for text, node_id in fake.texts if node_id == "7"]
    assert texts[0] == "loading model" and texts[1:len(encoding) + 1] == [f"encoding {v}/12" for v, _ in encoding]
    assert re.fullmatch(r"training 1/5, loss \d\.\d{4}", texts[len(encoding) + 1])
    runs = list((fake.dirs["output"] / "sd_adverb_lora").glob("cancelled-*"))
    assert len(runs) == 1
    checkpoints = sorted(runs[0].glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-3"], "did not stop within one step of Cancel"
    saved = load_any(checkpoints[0] / "cancelled.safetensors")
    assert any(float(m.up.abs().max()) > 0 for m in saved.modules.values())
    assert not (fake.dirs["loras"] / "cancelled.safetensors").exists(), "a cancelled run must not publish a LoRA"
    assert fake.flag is False  # the next prompt is not interrupted

    fake.on_progress = None
    lora, _, _, summary = node.train(small_captions, **args)  # queued again: continues from checkpoint-3
    assert lora.metadata["resumed_from"].endswith("checkpoint-3")
    assert [v for v, _ in fake.progress][len(encoding) + 2:] == [4, 5]  # the cache is reused: no encoding
    assert Path(lora.path) == fake.dirs["loras"] / "cancelled.safetensors"


# ------------------------------------------------------------------------------------------ apply (no ComfyUI)

def test_apply_lora_reads_any_format_as_kohya_keys(pack, tmp_path):
    """ApplyLoRA feeds ComfyUI kohya keys whatever the file format (here a PEFT adapter dir)."""
    import torch

    import convert

    modules = {f"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.{p}": convert.LoraModule(
        torch.randn(4, 32), torch.randn(32, 4), 8.0) for p in ("to_q", "to_k")}
    lora = convert.LoraFile(modules, family="sd1")
    peft_dir = convert.save_peft(lora, tmp_path / "adapter")
    apply = pack.NODE_CLASS_MAPPINGS["ApplyLoRA"]
    sd = apply.load_state_dict(Path(peft_dir))
    names = pack.nodes.apply_lora.module_names(sd)
    assert set(names) == {f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_{p}" for p in ("to_q", "to_k")}
    q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    src = modules["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"]
    delta = float(sd[q + ".alpha"]) / 4 * sd[q + ".lora_up.weight"] @ sd[q + ".lora_down.weight"]
    assert torch.allclose(delta, src.delta(), atol=1e-5)
    with pytest.raises(pack.nodes.apply_lora.LoraMappingError, match="lora_mid"):
        pack.nodes.apply_lora.module_names({"lora_unet_x.lora_mid.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="lora_name"):
        apply().apply(model=object(), lora_name="none", strength_model=1.0, strength_clip=1.0)
