"""sd-webui's modules/sd_models.py: the checkpoint list (title -> CheckpointInfo with .filename) and model
unload/reload, which record their calls here so tests can check them."""
checkpoints_list = {}
calls = []


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename


def unload_model_weights(sd_model=None, info=None):
    calls.append("unload")


def reload_model_weights(sd_model=None, info=None):
    calls.append("reload")
