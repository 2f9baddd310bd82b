"""`python -m convert --inspect FILE`: format, base family, module counts, rank/alpha per module group, dtype, metadata."""
from __future__ import annotations

from collections import Counter, defaultdict

from .lora import LoraFile

GROUPS = [  # (substring of the canonical key, group name), first match wins
    (".attn1.", "attn1 (self-attention)"),
    (".attn2.", "attn2 (cross-attention)"),
    (".ff.", "feed-forward"),
    (".proj_in", "proj_in/proj_out"),
    (".proj_out", "proj_in/proj_out"),
    (".resnets.", "resnets (LoCon)"),
    ("samplers.", "down/upsamplers (LoCon)"),
    (".self_attn.", "self_attn"),
    (".mlp.", "mlp"),
]


def group_of(key: str) -> str:
    component = key.split(".", 1)[0]
    for part, name in GROUPS:
        if part in key:
            return f"{component}: {name}"
    return f"{component}: other"


def _values(counter: Counter) -> str:
    return ", ".join(f"{v:g}" + (f" ×{n}" if len(counter) > 1 else "") for v, n in sorted(counter.items()))


def inspect_lora(lora: LoraFile) -> dict:
    """A JSON-able summary of one LoRA."""
    groups: dict[str, dict] = defaultdict(lambda: {"modules": 0, "rank": Counter(), "alpha": Counter()})
    dtypes = Counter()
    for key, m in sorted(lora.modules.items()):
        g = groups[group_of(key)]
        g["modules"] += 1
        g["rank"][m.rank] += 1
        g["alpha"][m.alpha] += 1
        dtypes[str(m.down.dtype).removeprefix("torch.")] += 1
    counts = Counter(k.split(".", 1)[0] for k in lora.modules)
    return {
        "source": lora.source,
        "format": lora.format,
        "family": {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}.get(lora.family, "unknown"),
        "modules": {"unet": counts.get("unet", 0), "text_encoder": counts.get("text_encoder", 0)
                    + counts.get("text_encoder_2", 0)},
        "groups": {name: {"modules": g["modules"], "rank": dict(g["rank"]), "alpha": dict(g["alpha"]),
                          "scale": sorted({a / r for a in g["alpha"] for r in g["rank"]})}
                   for name, g in sorted(groups.items())},
        "dtype": dict(dtypes),
        "metadata": dict(sorted(lora.metadata.items())),
    }


def format_report(info: dict) -> str:
    lines = [
        f"file:     {info['source']}",
        f"format:   {info['format']}",
        f"family:   {info['family']}",
        f"modules:  UNet {info['modules']['unet']}, text encoder {info['modules']['text_encoder']}",
        f"dtype:    {', '.join(f'{k} ×{v}' for k, v in info['dtype'].items())}",
        "groups:",
    ]
    for name, g in info["groups"].items():
        lines.append(f"  {name:38s} {g['modules']:4d} modules  rank {_values(Counter(g['rank']))}  "
                     f"alpha {_values(Counter(g['alpha']))}")
    if info["metadata"]:
        lines.append("metadata:")
        for k, v in info["metadata"].items():
            v = v if len(v) <= 100 else v[:97] + "..."
            lines.append(f"  {k}: {v}")
    return "\n".join(lines)
