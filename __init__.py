"""ComfyUI entry point of the pack (ComfyUI imports this file; sd-webui never does).

Only the node classes are imported here, relatively: ComfyUI loads the pack under a path-like
module name without putting it on sys.path, and has a top-level module `nodes` of its own.
"""
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Imported as a plain module, with no package around it: pytest does this for the repo root of a clone
    # whose folder name is not a Python name (the default `sd-adverb-lora`). There are no nodes to offer then.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
