"""The "Adverb LoRA" tab's gradio layout, wired to callbacks.py. Uses only what gradio 3.41 (sd-webui 1.10) and
4.x (Forge) share: Blocks/Tab/Row, plain components, `gr.update`, generator events (both hosts enable the queue)."""
from __future__ import annotations

import gradio as gr

from . import callbacks, jobs


def _keep_if_none(value):
    return gr.update() if value is None else value


LOSS_PLOT_WIDTH_GRADIO3 = 640  # px


def loss_plot() -> gr.LinePlot:
    """The live loss curve: a chart the page draws at the size it shows (not a bitmap it stretches), with the axes
    "step" and "loss (MSE)" and a legend for the raw and the smoothed curve (callbacks.loss_curve's table)."""
    kwargs = dict(x=callbacks.LOSS_CURVE_X, y=callbacks.LOSS_CURVE_Y, color=callbacks.LOSS_CURVE_SERIES,
                  x_title="step", y_title="loss (MSE)", label="Loss", height=280)
    if int(gr.__version__.split(".")[0]) < 4:
        # gradio 3.41's LinePlot hands an Altair chart to vega as it is, 200 px wide unless told; vega's "container"
        # width comes out 0 px wide there (headless Chromium), so a width in pixels: vega draws it at that size.
        kwargs.update(width=LOSS_PLOT_WIDTH_GRADIO3, color_legend_title="curve", color_legend_position="bottom",
                      tooltip=[callbacks.LOSS_CURVE_X, callbacks.LOSS_CURVE_Y, callbacks.LOSS_CURVE_SERIES])
    else:
        # gradio 4.40's LinePlot is its native plot: it sizes itself to its element's width (and follows resizes);
        # the legend's title is `color_title` there (3.41's names only raise deprecation warnings).
        kwargs.update(color_title="curve")
    return gr.LinePlot(**kwargs)


def build() -> gr.Blocks:
    """The tab: Captions (preview, prepare), Train (live progress, cancel, resume), Convert."""
    with gr.Blocks(analytics_enabled=False) as ui:
        gr.Markdown(callbacks.status_banner())
        with gr.Tab("Captions"):
            with gr.Row():
                source = gr.Textbox(label="COCO root or image folder", placeholder="/data/coco")
                split = gr.Textbox(label="Split (COCO)", value="train2014")
                mode = gr.Radio(list(jobs.MODES), value="safe", label="Mode")
            with gr.Row():
                keep = gr.Textbox(label="Keep (comma-separated; @spatial, @appearance … for groups)")
                remove = gr.Textbox(label="Remove (comma-separated)")
            with gr.Row():
                n_show = gr.Slider(minimum=1, maximum=200, value=20, step=1, label="Show the first N changed captions")
                preview_images = gr.Number(value=200, precision=0, label="Preview: images to read (0 = all)")
                out_root = gr.Textbox(label="Prepare into (empty: <sd-webui data>/outputs/adverb-lora/captions)")
            with gr.Row():
                preview_btn = gr.Button("Preview")
                prepare_btn = gr.Button("Prepare", variant="primary")
            report = gr.Markdown()
            table = gr.Dataframe(headers=callbacks.PREVIEW_HEADERS, datatype=["str", "str", "str"],
                                 interactive=False, wrap=True)
        with gr.Tab("Train"):
            with gr.Row():
                choices = callbacks.checkpoint_choices()
                base_model = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                                         label="Base model (sd-webui's checkpoints)")
                refresh_btn = gr.Button("↻ checkpoints")
                base_path = gr.Textbox(label="… or a path (single file or diffusers folder)")
            with gr.Row():
                captions = gr.Textbox(label="Caption set (from Prepare; empty: filter the Captions source while training)")
                name = gr.Textbox(label="Output name", value="adverb_lora")
            with gr.Row():
                steps = gr.Number(value=500, precision=0, label="Steps")
                learning_rate = gr.Number(value=1e-4, label="Learning rate")
                batch = gr.Number(value=1, precision=0, label="Batch")
                grad_accum = gr.Number(value=4, precision=0, label="Gradient accumulation")
                rank = gr.Number(value=4, precision=0, label="Rank")
                alpha = gr.Number(value=4, label="Alpha")
            with gr.Row():
                resolution = gr.Number(value=512, precision=0, label="Resolution")
                precision = gr.Radio(list(jobs.PRECISIONS), value="auto", label="Precision")
                seed = gr.Number(value=42, precision=0, label="Seed")
                save_every = gr.Number(value=100, precision=0, label="Save every (steps)")
                max_images = gr.Number(value=0, precision=0, label="Images (0 = all)")
            with gr.Row():
                validation_prompt = gr.Textbox(label="Validation prompt (its sample becomes the LoRA's preview)")
                sample_steps = gr.Number(value=20, precision=0, label="Sample steps")
                free_vram = gr.Checkbox(value=False, label="Unload sd-webui's model during training")
            with gr.Row():
                start_btn = gr.Button("Start / resume", variant="primary")
                cancel_btn = gr.Button("Cancel")
                show_btn = gr.Button("Show current run")
            cancel_note = gr.Markdown()
            status = gr.Markdown()
            curve = loss_plot()
        with gr.Tab("Convert"):
            with gr.Row():
                convert_src = gr.Textbox(label="LoRA (PEFT folder, diffusers or kohya/webui file, run or checkpoint folder)")
                convert_name = gr.Textbox(label="Name in the Lora folder (empty: from the source)")
                overwrite = gr.Checkbox(value=False, label="Overwrite")
            convert_btn = gr.Button("Convert into sd-webui's Lora folder", variant="primary")
            convert_msg = gr.Markdown()
            with gr.Row():
                before = gr.Textbox(label="convert --inspect: before", lines=14, interactive=False)
                after = gr.Textbox(label="convert --inspect: after", lines=14, interactive=False)

        filter_inputs = [source, split, mode, keep, remove]
        preview_btn.click(callbacks.preview, inputs=[*filter_inputs, n_show, preview_images], outputs=[table, report])
        prepare_btn.click(lambda *a: (lambda m, p: (m, _keep_if_none(p)))(*callbacks.prepare(*a)),
                          inputs=[*filter_inputs, out_root], outputs=[report, captions])
        refresh_btn.click(lambda: gr.update(choices=callbacks.checkpoint_choices()), outputs=[base_model], queue=False)
        start_btn.click(callbacks.start,
                        inputs=[base_model, base_path, name, captions, source, split, mode, steps, learning_rate, batch,
                                grad_accum, rank, alpha, resolution, precision, seed, save_every, validation_prompt,
                                free_vram, max_images, sample_steps, keep, remove],
                        outputs=[status, curve])
        cancel_btn.click(callbacks.cancel, outputs=[cancel_note], queue=False)
        show_btn.click(callbacks.watch_current, outputs=[status, curve])
        convert_btn.click(callbacks.convert, inputs=[convert_src, convert_name, overwrite],
                          outputs=[before, after, convert_msg])
    return ui
