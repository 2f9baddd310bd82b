"""What a real sd-webui 1.10.1 needs to start and generate offline, built from this pack's own files.

sd-webui loads `openai/clip-vit-large-patch14`'s tokenizer and text-encoder config from the Hugging Face
cache when it builds an SD1.5 model (its weights come from the checkpoint), and it needs a checkpoint to
load at all. Neither may come from a hub here, so:

- `build_clip_cache(hf_home)` writes that cache entry (`hub/models--openai--clip-vit-large-patch14/`,
  `snapshots/<hash>/` + `refs/main`, the layout huggingface_hub reads with HF_HUB_OFFLINE=1) from
  trainer/assets/clip_tokenizer (the tokenizer, bit-identical to the hub's) and trainer/assets/sd15's
  text-encoder config;
- `write_random_sd15(path)` writes a random-weight SD1.5 single file in sd-webui's (ldm) key layout,
  fp16 (~2 GB): sd-webui recognises SD1.5 only by its real shapes.

Usage (with the pack's Python, which has diffusers):

    python tools/sdwebui_offline.py --hf-home <dir> [--checkpoint <sd-webui>/models/Stable-diffusion/x.safetensors]

then start sd-webui with HF_HOME=<dir> HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP_REPO = "openai/clip-vit-large-patch14"
TOKENIZER_DIR = ROOT / "trainer" / "assets" / "clip_tokenizer"
TEXT_CONFIG = ROOT / "trainer" / "assets" / "sd15" / "text_encoder" / "config.json"
# The hub repository also has special_tokens_map.json; the tokenizer_config.json shipped here names
# the same special tokens, so transformers needs no other file.
FILES = {name: TOKENIZER_DIR / name for name in ("vocab.json", "merges.txt", "tokenizer_config.json")}
FILES["config.json"] = TEXT_CONFIG


def build_clip_cache(hf_home: Path) -> Path:
    """Write the `openai/clip-vit-large-patch14` cache entry under `hf_home/hub`; its snapshot folder."""
    missing = [str(p) for p in FILES.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"pack files missing (a broken checkout?): {', '.join(missing)}")
    digest = hashlib.sha1()
    for name in sorted(FILES):
        digest.update(name.encode() + b"\0" + FILES[name].read_bytes())
    revision = digest.hexdigest()  # stands for the hub commit: any 40-hex name the refs file points to
    repo = Path(hf_home) / "hub" / ("models--" + CLIP_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    tmp = snapshot.with_name(snapshot.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, src in FILES.items():
        shutil.copyfile(src, tmp / name)
    shutil.rmtree(snapshot, ignore_errors=True)
    os.replace(tmp, snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    ref_tmp = repo / "refs" / "main.tmp"
    ref_tmp.write_text(revision)
    os.replace(ref_tmp, repo / "refs" / "main")
    return snapshot


def write_random_sd15(path: Path, seed: int = 0) -> Path:
    """A random-weight SD1.5 single-file checkpoint (fp16, ldm keys), written atomically."""
    import torch

    sys.path.insert(0, str(ROOT))
    from trainer.models.single_file import build_random_pipeline, save_single_file

    return save_single_file(build_random_pipeline("sd15", seed=seed), path, dtype=torch.float16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf-home", type=Path, required=True, help="HF_HOME to give sd-webui")
    parser.add_argument("--checkpoint", type=Path, help="also write a random SD1.5 single file here (.safetensors)")
    args = parser.parse_args(argv)
    print(f"{CLIP_REPO}: {build_clip_cache(args.hf_home)}")
    if args.checkpoint:
        print(f"random SD1.5: {write_random_sd15(args.checkpoint)}")


if __name__ == "__main__":
    main()
