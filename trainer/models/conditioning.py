"""What the UNet is conditioned on besides the noisy latents: the text, and for SDXL also the image size.

SD1.x/SD2.x: the last hidden state of one CLIP text encoder. SDXL (`addition_embed_type="text_time"`): the
penultimate hidden states of CLIP ViT-L and OpenCLIP bigG side by side, the pooled (projected) output of
bigG, and `add_time_ids` = (original height, width, crop top, left, target height, width). The encoding
follows `StableDiffusionXLPipeline.encode_prompt` / `_get_add_time_ids` exactly (a test compares them), but
works on the components alone, so the latent cache and the adverb evaluation need no pipeline object.

A batch's conditioning travels as the UNet's keyword arguments: `{"encoder_hidden_states": ...}`, plus
`"added_cond_kwargs": {"text_embeds": pooled, "time_ids": ...}` for SDXL.
"""
from __future__ import annotations


def text_parts(pipe_or_parts) -> dict:
    """The text encoders and tokenizers of a pipeline or dict (`text_encoder_2`/`tokenizer_2` only for SDXL)."""
    names = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    if isinstance(pipe_or_parts, dict):
        return {k: pipe_or_parts.get(k) for k in names}
    return {k: getattr(pipe_or_parts, k, None) for k in names}


def encode_prompts(parts: dict, prompts: list[str]) -> dict:
    """`{"embedding": [B, 77, D]}`, plus `"pooled": [B, P]` when `parts` has a second text encoder (SDXL).

    SD1/SD2: the text encoder's last hidden state. SDXL: both encoders' penultimate hidden states
    concatenated, and the second encoder's projected pooled output (diffusers' `encode_prompt`, no clip skip).
    """
    import torch

    prompts = list(prompts)
    te2, tok2 = parts.get("text_encoder_2"), parts.get("tokenizer_2")
    if te2 is None:
        te, tok = parts["text_encoder"], parts["tokenizer"]
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            return {"embedding": te(ids.to(te.device))[0]}
    if tok2 is None:
        raise ValueError("SDXL text encoding: text_encoder_2 is given but tokenizer_2 is not")
    hidden, pooled = [], None
    with torch.no_grad():
        for te, tok in ((parts["text_encoder"], parts["tokenizer"]), (te2, tok2)):
            ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids
            out = te(ids.to(te.device), output_hidden_states=True)
            pooled = out[0]  # only the last encoder's counts: CLIPTextModelWithProjection's text_embeds
            hidden.append(out.hidden_states[-2])
    device = hidden[1].device
    return {"embedding": torch.cat([h.to(device) for h in hidden], dim=-1), "pooled": pooled}


def add_time_ids(original_size, crop_top_left, target_size):
    """SDXL's size conditioning, a float tensor of 6: (orig h, orig w, crop top, crop left, target h, target w).

    Sizes are (height, width), as diffusers' `_get_add_time_ids` and the SDXL paper order them.
    """
    import torch

    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)


def unet_kwargs(text: dict, time_ids=None, device=None, dtype=None) -> dict:
    """The UNet's conditioning keyword arguments from `encode_prompts` output (+ `time_ids` [B, 6] for SDXL)."""
    def move(t):
        return t.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else t

    kwargs = {"encoder_hidden_states": move(text["embedding"])}
    if "pooled" in text:
        if time_ids is None:
            raise ValueError("SDXL conditioning needs time_ids (original size, crop, target size)")
        kwargs["added_cond_kwargs"] = {"text_embeds": move(text["pooled"]), "time_ids": move(time_ids)}
    return kwargs


def move_conditioning(cond, device, dtype):
    """`cond` (a tensor of text embeddings, or UNet keyword arguments) on `device` in `dtype` (floats only)."""
    if not isinstance(cond, dict):
        return cond.to(device, dtype, non_blocking=True)
    return {k: move_conditioning(v, device, dtype) for k, v in cond.items()}


def square_time_ids(resolution: int, batch: int = 1):
    """`add_time_ids` of an uncropped square image generated at `resolution` (what the SDXL pipeline passes)."""
    return add_time_ids((resolution, resolution), (0, 0), (resolution, resolution)).expand(batch, -1)


def prompt_conditioning(parts, prompts: list[str], resolution: int | None = None, device=None, dtype=None) -> dict:
    """UNet keyword arguments for `prompts` at `resolution` px (SDXL's size conditioning: uncropped, square)."""
    text = encode_prompts(text_parts(parts), prompts)
    ids = None
    if "pooled" in text:
        if resolution is None:
            raise ValueError("SDXL conditioning needs the image resolution")
        ids = square_time_ids(resolution, len(prompts))
    return unet_kwargs(text, ids, device, dtype)


__all__ = ["add_time_ids", "encode_prompts", "move_conditioning", "prompt_conditioning", "square_time_ids", "text_parts",
           "unet_kwargs"]
