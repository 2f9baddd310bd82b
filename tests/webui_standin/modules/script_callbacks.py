"""sd-webui's modules/script_callbacks.py: `on_ui_tabs(callback)` registers; sd-webui calls the callbacks while
building its UI (`ui_tabs_callback`) and shows each returned (blocks, title, elem_id) as a top-level tab."""
_ui_tabs = []


def on_ui_tabs(callback):
    _ui_tabs.append(callback)


def ui_tabs_callback():
    tabs = []
    for callback in _ui_tabs:
        tabs += callback() or []
    return tabs
