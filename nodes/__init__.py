"""ComfyUI nodes of the pack; always imported relatively (ComfyUI owns the top-level name `nodes`).

Importing this package is cheap: each node imports trainer/convert/comfy when it runs.
"""
from .apply_lora import ApplyLoRA
from .captions import CaptionAdverbFilter, LoadCOCOCaptions
from .train_lora import TrainUNetLoRA

NODE_CLASS_MAPPINGS: dict = {
    "LoadCOCOCaptions": LoadCOCOCaptions,
    "CaptionAdverbFilter": CaptionAdverbFilter,
    "TrainUNetLoRA": TrainUNetLoRA,
    "ApplyLoRA": ApplyLoRA,
}
NODE_DISPLAY_NAME_MAPPINGS: dict = {
    "LoadCOCOCaptions": "Load COCO Captions",
    "CaptionAdverbFilter": "Caption Adverb Filter",
    "TrainUNetLoRA": "Train UNet LoRA (adverb-free captions)",
    "ApplyLoRA": "Apply LoRA (any format, strict)",
}
