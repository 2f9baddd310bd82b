"""ComfyUI nodes of the pack; always imported relatively (ComfyUI owns the top-level name `nodes`)."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
