"""sd-webui 1.10.1's modules/sd_models.py as the tab meets it, written from its behaviour (not its code):

- the checkpoint list and its aliases: a new file is listed under its name (`sub/model.safetensors`) until sd-webui
  has hashed it; then its title gains the hash (`sub/model.safetensors [ab91c7c39b]`), the list is re-keyed in
  place, and every earlier name stays an alias (`checkpoint_aliases`), so `get_closet_checkpoint_match` (sd-webui's
  spelling) finds it by old title, new title, name, name without extension or hash;
- the loaded model (`model_data.sd_model`, also `shared.sd_model`) and what moves it: `unload_model_weights()`
  sends it to the CPU, `send_model_to_device(m)` brings it back, and `reload_model_weights()` returns at once
  when the selected checkpoint is the loaded one (so it never brings an unloaded model back).
Each of these records its call in `calls` so tests can check which were made.
"""
import hashlib
import os
import re

from modules import paths, shared

checkpoints_list = {}  # title -> CheckpointInfo, in listing order
checkpoint_aliases = {}  # every name a checkpoint answers to -> CheckpointInfo
calls = []


def model_path():
    return os.path.abspath(os.path.join(paths.models_path, "Stable-diffusion"))


class CheckpointInfo:
    """One checkpoint file: `name` (relative to models/Stable-diffusion, else the file name), `title` (the name,
    plus " [shorthash]" once hashed), `ids` (the names it answers to)."""

    def __init__(self, filename):
        self.filename = filename
        full = os.path.abspath(filename)
        inside = full.startswith(model_path() + os.sep)
        self.name = os.path.relpath(full, model_path()) if inside else os.path.basename(filename)
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(self.name.replace("/", "_").replace("\\", "_"))[0]
        self.sha256 = self.shorthash = None
        self.title = self.name
        self.ids = [self.title, self.name, self.model_name, self.name_for_extra]

    def register(self):
        checkpoints_list[self.title] = self
        for alias in self.ids:
            checkpoint_aliases[alias] = self

    def calculate_shorthash(self):
        """What sd-webui does when it first loads (or is asked to hash) the file: the title gains the hash."""
        if os.path.isfile(self.filename):
            with open(self.filename, "rb") as f:
                self.sha256 = hashlib.sha256(f.read()).hexdigest()
        else:  # the tests' built-in tiny model has no file: hash its name
            self.sha256 = hashlib.sha256(self.filename.encode()).hexdigest()
        self.shorthash = self.sha256[:10]
        old = self.title
        self.title = f"{self.name} [{self.shorthash}]"
        self.ids += [self.shorthash, self.sha256, self.title, f"{self.name_for_extra} [{self.shorthash}]"]
        items = [(self.title if k == old else k, v) for k, v in checkpoints_list.items()]
        checkpoints_list.clear()
        checkpoints_list.update(items)
        self.register()
        return self.shorthash


def list_models():
    """sd-webui's start-up scan of models/Stable-diffusion (unhashed: titles are plain names)."""
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    for folder, _, files in sorted(os.walk(model_path())):
        for f in sorted(files):
            if f.endswith((".safetensors", ".ckpt")):
                CheckpointInfo(os.path.join(folder, f)).register()


def get_closet_checkpoint_match(search_string):
    """An alias, else the shortest title containing the string, else the same without a trailing " [hash]"."""
    if not search_string:
        return None
    if search_string in checkpoint_aliases:
        return checkpoint_aliases[search_string]
    for text in (search_string, re.sub(r"\s*\[[^]]+]\s*$", "", search_string)):
        found = sorted((i for i in checkpoints_list.values() if text in i.title), key=lambda i: len(i.title))
        if found:
            return found[0]
    return None


class Model:
    """A loaded model: where its weights are and which checkpoint they came from."""

    def __init__(self, info, device="cuda"):
        self.sd_checkpoint_info = info
        self.sd_model_checkpoint = info.filename
        self.device = device
        self.lowvram = False


class ModelData:
    def __init__(self):
        self.sd_model = None


model_data = ModelData()


def send_model_to_cpu(m):
    calls.append("send_model_to_cpu")
    if m is not None:
        m.device = "cpu"


def send_model_to_device(m):
    calls.append("send_model_to_device")
    m.device = shared.device


def unload_model_weights(sd_model=None, info=None):
    calls.append("unload_model_weights")
    send_model_to_cpu(sd_model or shared.sd_model)
    return sd_model


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    calls.append("reload_model_weights")
    sd_model = sd_model or model_data.sd_model
    selected = info or next(iter(checkpoints_list.values()), None)
    if sd_model is not None and selected is not None and sd_model.sd_model_checkpoint == selected.filename \
            and not forced_reload:
        return sd_model  # the checkpoint did not change: nothing is loaded or moved
    raise NotImplementedError("the stand-in cannot load another checkpoint")
