"""Rebuild CLIP's tokenizer files (vocab.json, merges.txt) from the BPE merges list.

CLIP (openai/CLIP, simple_tokenizer.py) derives its 49,408-token vocabulary from the first
48,894 merges of ``bpe_simple_vocab_16e6.txt.gz``: the 256 byte symbols, the same with ``</w>``,
one token per merge, then the two special tokens. The ``open_clip_torch`` wheel ships that
file, so the tokenizer can be rebuilt offline and bit-identical to the hub's
``openai/clip-vit-large-patch14`` files. Usage::

    pip download --no-deps -d /tmp/oc open-clip-torch
    python tools/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl trainer/assets/clip_tokenizer
"""
import gzip
import json
import sys
import zipfile
from pathlib import Path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def build(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def main(wheel: str, out_dir: str) -> None:
    with zipfile.ZipFile(wheel) as zf:
        bpe = zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    vocab, merges = build(bpe)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
