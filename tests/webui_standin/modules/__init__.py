"""A stand-in for sd-webui's `modules` package: only the five names the Adverb LoRA tab may use
(script_callbacks, shared, sd_models, scripts, paths), each with the attributes sd-webui 1.10 has that the tab reads.
tests/test_webui_tab.py puts tests/webui_standin on sys.path and points these at temporary folders."""
