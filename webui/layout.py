"""The page: the Generate form (from :func:`webui.form.form_fields`), the results, the examples, and the hardened
launch settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from webui.form import CUSTOM_QUALITY, PRESET_FIELDS, apply_quality
from webui.runner import Runner, WorldStitchApp, public_message
from webui.settings import AppSettings

EXAMPLE_NAMES = ("room", "street", "landscape")  # procedural examples made by the project (scripts/)
CSS = """
#viewer canvas { background: #111; }
"""
ROWS = (("mode", "quality"), ("seed", "randomize_seed"))
"""Inputs shown side by side (the rest stack in declaration order)."""


def profile_banner(runner: Runner) -> str:
    """Which profile the server runs, and how to start the other one (no server paths)."""
    profile = getattr(runner, "profile", "offline")
    description = getattr(runner, "description", "")
    if profile == "generative":
        other = (
            "For a fast, weight-free run (PatchMatch outpainting + classical depth), start the app with "
            "`python app.py --profile offline`."
        )
        title = "Generative profile: diffusion outpainting and learned depth"
    else:
        other = (
            "For diffusion outpainting and learned depth, download the model weights (see the README, "
            '"Generative profile") and start the app with `python app.py --profile generative` '
            "— a GPU is strongly recommended."
        )
        title = "Offline profile: PatchMatch outpainting and classical depth, no model weights"
    detail = f" ({public_message(description)})" if description else ""  # no server paths on the page
    return f"**{title}**{detail}. {other}"


def example_rows(examples_dir: Path) -> list[list]:
    """[preview, photo, prompt] rows for the examples that exist under ``examples_dir``."""
    rows = []
    for name in EXAMPLE_NAMES:
        image = examples_dir / name / "image.png"
        prompt_file = examples_dir / name / "prompt.txt"
        if image.is_file():
            prompt = prompt_file.read_text(encoding="utf-8").strip() if prompt_file.is_file() else ""
            rows.append([str(image), str(image), prompt])
    return rows


def build_demo(runner: Runner, settings: AppSettings | None = None, *, use_zero_gpu: bool | None = None) -> gr.Blocks:
    """The WorldStitch UI around an injected pipeline ``runner`` (see :class:`webui.runner.Runner`)."""
    app = WorldStitchApp(runner, settings, use_zero_gpu=use_zero_gpu)
    settings = app.settings
    main_fields = [spec for spec in app.fields if not spec.advanced]
    advanced_fields = [spec for spec in app.fields if spec.advanced]
    paired = {name: row for row in ROWS for name in row}

    with gr.Blocks(title="WorldStitch", delete_cache=settings.cache_cleanup, analytics_enabled=False) as demo:
        demo.worldstitch = app  # tests and main() reach the handlers and settings through the Blocks
        gr.Markdown(
            "# WorldStitch\nOne photo and a prompt → a 360° scene of Gaussian splats you can orbit here and "
            "download (PLY, .splat, point cloud, frames with `transforms.json`, video)."
        )
        gr.Markdown(profile_banner(runner), elem_id="profile-banner")
        inputs: dict[str, gr.components.Component] = {}
        with gr.Row():
            with gr.Column(scale=1):
                for spec in main_fields:
                    if spec.name in inputs:
                        continue
                    if spec.name in paired:
                        with gr.Row():
                            for name in paired[spec.name]:
                                inputs[name] = next(f for f in main_fields if f.name == name).component()
                    else:
                        inputs[spec.name] = spec.component()
                    if spec.name == "image":
                        preview = gr.Image(
                            label="Photo as it will be used", interactive=False, format="png", height=220
                        )
                with gr.Accordion("Advanced settings", open=False):
                    gr.Markdown("Size, steps and splat iterations are used when Quality is **custom**.")
                    for spec in advanced_fields:
                        inputs[spec.name] = spec.component()
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo or pick an example, then press **Generate**.", elem_id="status")
                viewer = gr.Model3D(label="Scene (drag to orbit, scroll to zoom)", height=480, elem_id="viewer")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                gallery = gr.Gallery(label="Generated views and depth", columns=4, height=260, elem_id="gallery")
                timings = gr.Dataframe(
                    headers=["stage", "seconds"],
                    datatype=["str", "number"],
                    label="Time per stage",
                    interactive=False,
                    elem_id="timings",
                )

        rows = example_rows(settings.examples_dir)
        if rows:
            app.examples = gr.Examples(
                examples=rows,
                inputs=[preview, inputs["image"], inputs["prompt"]],
                label="Examples (made by the project; no downloaded images)",
                cache_examples=False,
            )

        job = generate_btn.click(
            app.generate,
            inputs=[inputs[spec.name] for spec in app.fields],
            outputs=[status, viewer, downloads, gallery, timings, inputs["seed"]],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        cancel_btn.click(app.cancel, None, None, cancels=[job], queue=False, api_visibility="private")
        inputs["image"].change(
            app.preview,
            inputs["image"],
            preview,
            api_visibility="private",
            concurrency_limit=2,
            concurrency_id="decode",
            show_progress="minimal",
        )
        preset_inputs = [inputs[name] for name in PRESET_FIELDS]
        inputs["quality"].change(apply_quality, inputs["quality"], preset_inputs, queue=False, api_visibility="private")
        for slider in preset_inputs:
            slider.input(lambda: CUSTOM_QUALITY, None, inputs["quality"], queue=False, api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=settings.queue_max_size)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **extra):
    """Serve ``demo`` with the hardened launch settings. Returns Gradio's ``(app, local_url, share_url)``."""
    settings: AppSettings = demo.worldstitch.settings
    return demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=settings.limits.max_upload,  # larger uploads get 413
        enable_monitoring=False,  # /monitoring answers 403
        allowed_paths=[],  # nothing beyond Gradio's upload/cache dirs; examples and results are copied to the cache
        show_error=False,  # only gr.Error messages (written for users) reach the browser
        mcp_server=False,
        run_history=False,  # no saved inputs in browsers; keeps the route surface small
        footer_links=["api", "gradio"],
        css=CSS,
        **extra,
    )
