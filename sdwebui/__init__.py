"""The sd-webui / Forge tab "Adverb LoRA" (loaded by scripts/adverb_lora.py; ComfyUI and pip installs never import it).

host.py       sd-webui's side: the Lora folder, checkpoint list and lookup, model unload/back to VRAM (guarded)
jobs.py       the work, each heavy step a `python -m trainer|convert` subprocess; raises TabError on bad input
callbacks.py  what the tab's buttons call: plain values in and out, every error a message (tests drive these)
layout.py     the gradio layout, wired to callbacks.py (works on gradio 3.41 and 4.x)

Standard library only (plus gradio in layout.py, and gradio's own pandas for the live loss curve): nothing of
torch, diffusers, PEFT, accelerate or spaCy enters sd-webui's process.
"""
