"""The page: examples at the top, the Generate form (from :func:`webui.form.form_fields`), the results with one
progress display (on the status), "grow where I look", "place objects", and the hardened launch settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from core.images import ImageError, check_aspect
from pipeline.config import PRESETS, build_run_config
from webui.estimate import estimate_text
from webui.form import CUSTOM_QUALITY, PRESET_FIELDS, apply_quality
from webui.objects_ui import (
    DEFAULT_COLOR,
    DEFAULT_SIZE,
    KINDS,
    OCCLUSION_CHOICES,
    OFFSET_RANGE,
    SCALE_RANGE,
    SIZE_RANGE,
    TURN_RANGE,
)
from webui.runner import PITCH_RANGE, YAW_RANGE, Runner, WorldStitchApp, public_message
from webui.settings import AppSettings

PROFILES_SECTION = "Profiles: offline and generative"
"""README.md's section that explains the two profiles (the banner links to it)."""
PROFILES_ANCHOR = "profiles-offline-and-generative"
"""Its anchor as GitHub and the Hugging Face Space page render it."""
CSS = """
#viewer canvas { background: #111; }
"""
ROWS = (("mode", "quality"), ("seed", "randomize_seed"))
"""Inputs shown side by side (the rest stack in declaration order)."""
GROW_DEFAULT_YAW = 60.0  # a first "grow" turns right by about one view (the default field of view is ~53°)


@dataclass(frozen=True)
class Example:
    """One example on the page: a folder under ``examples/`` and the name people see."""

    folder: str
    label: str


EXAMPLES = (
    Example("room", "Living room (made by the project, with its depth map)"),
    Example("street", "City street (made by the project, with its depth map)"),
    Example("landscape", "Meadow and lake (made by the project, with its depth map)"),
    Example("photo-wine-corner", "Photo: a corner with wine bottles (Jakub Mede, CC BY 4.0)"),
    Example("photo-mountain-trail", "Photo: mountain trail (Aitzol Berasategi, CC BY 4.0)"),
    Example("photo-autumn-mountains", "Photo: autumn mountains (Aitzol Berasategi, CC BY 4.0)"),
)
EXAMPLE_NAMES = tuple(example.folder for example in EXAMPLES)
PHOTO_NAMES = ("image.png", "image.jpg")  # an example's photo, first found


def profile_banner(runner: Runner, reason: str = "", readme_url: str | None = None) -> str:
    """What this server does, in plain words, and where to read how to get the other profile (no server paths).

    Args:
        runner: the injected pipeline (its ``profile`` and ``description``).
        reason: why this profile was chosen (:func:`pipeline.space.choose_space_profile`), shown when given.
        readme_url: link to README.md's :data:`PROFILES_SECTION` (the Space page); None names the section instead.
    """
    profile = getattr(runner, "profile", "offline")
    description = getattr(runner, "description", "")
    more = f"[{PROFILES_SECTION}]({readme_url})" if readme_url else f"README.md, section “{PROFILES_SECTION}”"
    if profile == "generative":
        title = "AI mode (generative profile)"
        body = (
            "The unseen parts of the scene are painted by a diffusion model (Stable Diffusion inpainting) and "
            "their depth estimated by a depth network (Depth Anything), on the GPU. For a quick run without any "
            "model, start the app with `python app.py --profile offline`."
        )
    else:
        title = "Quick mode without AI models (offline profile)"
        body = (
            "The unseen parts of the scene are filled by copying patches of your photo (PatchMatch), and depth "
            "comes from simple geometry, so the surroundings look like stretched copies of the photo. For "
            "surroundings painted by AI, start the app with `python app.py --profile generative` on a machine "
            "with a GPU and the model weights."
        )
    why = f" Why this mode: {public_message(reason)}." if reason else ""
    detail = f" Models: {public_message(description)}." if description else ""  # no server paths on the page
    return f"**{title}.** {body}{why}{detail} More: {more}."


def example_photo(folder: Path) -> Path | None:
    """The photo of an example folder (``image.png`` or ``image.jpg``), or None."""
    return next((folder / name for name in PHOTO_NAMES if (folder / name).is_file()), None)


def example_rows(examples_dir: Path) -> list[list]:
    """[photo, prompt, depth map or None] rows for the :data:`EXAMPLES` that exist under ``examples_dir``."""
    return [row for _, row in _examples(examples_dir)]


def _examples(examples_dir: Path) -> list[tuple[str, list]]:
    found = []
    for example in EXAMPLES:
        folder = examples_dir / example.folder
        photo = example_photo(folder)
        if photo is None:
            continue
        prompt_file, depth = folder / "prompt.txt", folder / "depth.png"
        prompt = prompt_file.read_text(encoding="utf-8").strip() if prompt_file.is_file() else ""
        found.append((example.label, [str(photo), prompt, str(depth) if depth.is_file() else None]))
    return found


def photo_size(path) -> tuple[int, int] | None:
    """(W, H) of an uploaded photo from its header (no decoding), upright; None when unreadable or absent."""
    if not isinstance(path, str) or not path:
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientation turned by 90°
                width, height = height, width
        check_aspect(width, height)
    except (OSError, ValueError, ImageError):
        return None
    return width, height


def direction_from_click(panorama, evt: gr.SelectData):
    """Yaw and pitch (degrees) of the panorama pixel a user clicked (longitude -180..180 left to right, latitude
    90..-90 top to bottom; see :mod:`pipeline.panorama`)."""
    size = photo_size(panorama)
    if size is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
        return gr.skip(), gr.skip()
    (width, height), (col, row) = size, evt.index
    yaw = ((float(col) + 0.5) / width - 0.5) * 360.0
    pitch = (0.5 - (float(row) + 0.5) / height) * 180.0
    return round(min(max(yaw, YAW_RANGE[0]), YAW_RANGE[1])), round(min(max(pitch, PITCH_RANGE[0]), PITCH_RANGE[1]))


def build_demo(runner: Runner, settings: AppSettings | None = None, *, use_zero_gpu: bool | None = None) -> gr.Blocks:
    """The WorldStitch UI around an injected pipeline ``runner`` (see :class:`webui.runner.Runner`)."""
    app = WorldStitchApp(runner, settings, use_zero_gpu=use_zero_gpu)
    settings = app.settings
    generative = getattr(runner, "profile", "offline") == "generative"
    paired = {name: row for row in ROWS for name in row}

    with gr.Blocks(title="WorldStitch", delete_cache=settings.cache_cleanup, analytics_enabled=False) as demo:
        demo.worldstitch = app  # tests and main() reach the handlers and settings through the Blocks
        gr.Markdown(
            "# WorldStitch\nOne photo and a prompt → a 360° scene of Gaussian splats you can orbit here and "
            "download (splats, a GLB mesh for Blender/Unity/three.js, a 360° panorama, the point cloud, frames "
            "with `transforms.json`, a video)."
        )
        gr.Markdown(profile_banner(runner, settings.profile_reason, settings.readme_url), elem_id="profile-banner")
        # every input is made first and placed below, so the examples can sit at the top of the page
        inputs = {
            spec.name: spec.component(visible=generative or not spec.diffusion_only, render=False)
            for spec in app.fields
        }
        found = _examples(settings.examples_dir)
        if found:
            app.examples = gr.Examples(
                examples=[row for _, row in found],
                inputs=[inputs["image"], inputs["prompt"], inputs["depth"]],
                example_labels=[label for label, _ in found],
                label="Examples: pick one, then press Generate",
                cache_examples=False,
                elem_id="examples",
            )
        with gr.Row():
            with gr.Column(scale=1):
                placed: set[str] = set()
                for spec in app.fields:
                    if spec.advanced or spec.name in placed:
                        continue
                    if spec.name in paired:
                        with gr.Row():
                            for name in paired[spec.name]:
                                inputs[name].render()
                                placed.add(name)
                    else:
                        inputs[spec.name].render()
                        placed.add(spec.name)
                    if spec.name == "image":
                        preview = gr.Image(
                            label="Photo as it will be used", interactive=False, format="png", height=220
                        )
                with gr.Accordion("Advanced settings", open=False):
                    gr.Markdown("Size, steps and splat iterations are used when Quality is **custom**.")
                    for spec in app.fields:
                        if spec.advanced:
                            inputs[spec.name].render()
                estimate = gr.Markdown(elem_id="estimate")
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
            with gr.Column(scale=2):
                status = gr.Markdown("Pick an example or upload a photo, then press **Generate**.", elem_id="status")
                viewer = gr.Model3D(label="Scene (drag to orbit, scroll to zoom)", height=480, elem_id="viewer")
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
                with gr.Accordion("Grow where I look", open=True, visible=False, elem_id="grow-panel") as grow_panel:
                    gr.Markdown(
                        "Turn toward a direction (or click the panorama) and grow the scene there: a new view is "
                        "painted from what is already there, then the splats and downloads are remade."
                    )
                    panorama = gr.Image(
                        label="Panorama (click where to grow)",
                        type="filepath",
                        interactive=False,
                        visible=False,
                        elem_id="panorama",
                    )
                    with gr.Row():
                        yaw = gr.Slider(*YAW_RANGE, value=GROW_DEFAULT_YAW, step=1, label="Turn (°, right +)")
                        pitch = gr.Slider(*PITCH_RANGE, value=0, step=1, label="Look up/down (°, up +)")
                    grow_btn = gr.Button("Grow the scene there", elem_id="grow")
                with gr.Accordion("Place objects", open=True, visible=False, elem_id="objects-panel") as objects_panel:
                    gr.Markdown(
                        "Click a view where an object should stand: it is placed on that surface, at that pixel's "
                        "depth, and shown in the view (hidden where the scene is in front). Adjust it, then press "
                        "**Add object**: the viewer, the video and the downloads are remade with it."
                    )
                    object_view = gr.Slider(0, 1, value=0, step=1, label="View to click in", elem_id="object-view")
                    place_view = gr.Image(
                        label="Click where the object should stand",
                        interactive=False,
                        format="png",
                        elem_id="place-view",
                    )
                    object_note = gr.Markdown(elem_id="object-note")
                    with gr.Row():
                        kind = gr.Radio(list(KINDS), value="box", label="Object")
                        mesh = gr.File(
                            label="Mesh (GLB or OBJ), for the kind 'mesh'",
                            file_types=[".glb", ".obj"],
                            type="filepath",
                            height=150,
                        )
                    with gr.Row():
                        size = gr.Slider(*SIZE_RANGE, value=DEFAULT_SIZE, step=0.05, label="Size (largest side)")
                        color = gr.ColorPicker(DEFAULT_COLOR, label="Colour")
                        turn = gr.Slider(*TURN_RANGE, value=0, step=5, label="Turn (°)")
                    with gr.Accordion("Adjust", open=False):
                        with gr.Row():
                            right = gr.Slider(*OFFSET_RANGE, value=0, step=0.05, label="Move right")
                            up = gr.Slider(*OFFSET_RANGE, value=0, step=0.05, label="Move up")
                            away = gr.Slider(*OFFSET_RANGE, value=0, step=0.05, label="Move away")
                        scale = gr.Slider(*SCALE_RANGE, value=1, step=0.05, label="Scale")
                    occlusion = gr.Radio(list(OCCLUSION_CHOICES), value=OCCLUSION_CHOICES[0], label="Occlusion")
                    with gr.Row():
                        add_btn = gr.Button("Add object", variant="primary", elem_id="add-object")
                        clear_btn = gr.Button("Clear objects", elem_id="clear-objects")
                    objects_table = gr.Dataframe(
                        headers=["#", "object", "size", "position (x, y, z)", "colour"],
                        datatype=["number", "str", "number", "str", "str"],
                        label="Objects in the scene",
                        interactive=False,
                        elem_id="objects",
                    )
                gallery = gr.Gallery(label="Generated views and depth", columns=4, height=260, elem_id="gallery")
                timings = gr.Dataframe(
                    headers=["stage", "seconds"],
                    datatype=["str", "number"],
                    label="Time per stage",
                    interactive=False,
                    elem_id="timings",
                )
        scene = gr.State(None, time_to_live=settings.kept_scene_s, delete_callback=app.scenes.drop)
        pending = gr.State(None)  # the clicked pixel of the object being placed (webui.objects_ui.Click)

        results = [status, viewer, downloads, gallery, timings]
        job = generate_btn.click(
            app.generate_event(),
            inputs=[inputs[spec.name] for spec in app.fields],
            outputs=[*results, inputs["seed"], scene],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="gpu",
            show_progress="full",
            show_progress_on=[status],  # one progress display: not on the viewer, downloads, seed...
        )
        job.success(_grow_panel, [scene, downloads], [grow_panel, panorama], queue=False, api_visibility="private")
        grown = grow_btn.click(
            app.grow,
            inputs=[scene, yaw, pitch],
            outputs=[*results, scene],
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="gpu",
            show_progress="full",
            show_progress_on=[status],
        )
        grown.success(_grow_panel, [scene, downloads], [grow_panel, panorama], queue=False, api_visibility="private")
        _wire_objects(
            app,
            (job, grown),
            results,
            scene,
            pending,
            dict(
                panel=objects_panel,
                view=object_view,
                image=place_view,
                note=object_note,
                table=objects_table,
                add=add_btn,
                clear=clear_btn,
            ),
            [kind, size, color, turn, right, up, away, scale, mesh, occlusion],
        )
        # no `cancels=`: the handler stops itself within half a second and says so (Gradio's cancellation would
        # mark the status "Error"); see WorldStitchApp._run
        cancel_btn.click(
            app.cancel,
            None,
            status,
            concurrency_limit=None,  # queued (a request without the queue carries no session), never waits
            concurrency_id="cancel",
            api_visibility="private",
            show_progress="hidden",
        )
        panorama.select(direction_from_click, panorama, [yaw, pitch], queue=False, api_visibility="private")
        inputs["image"].change(
            app.preview,
            inputs["image"],
            preview,
            api_visibility="private",
            concurrency_limit=2,
            concurrency_id="decode",
            show_progress="minimal",
        )
        # a photo the user uploads is not the example's: its depth map no longer applies
        inputs["image"].upload(lambda: None, None, inputs["depth"], queue=False, api_visibility="private")
        preset_inputs = [inputs[name] for name in PRESET_FIELDS]
        inputs["quality"].change(apply_quality, inputs["quality"], preset_inputs, queue=False, api_visibility="private")
        for slider in preset_inputs:
            slider.input(lambda: CUSTOM_QUALITY, None, inputs["quality"], queue=False, api_visibility="private")

        estimate_names = ("image", "mode", "quality", "aspect", "width", "height", "fov_deg", "steps", "splat_iters")
        estimate_inputs = [inputs[name] for name in (*estimate_names, "video")]

        def show_estimate(*values):
            return _estimate(runner, *values)

        for name in (*estimate_names, "video"):
            inputs[name].change(
                show_estimate, estimate_inputs, estimate, queue=False, api_visibility="private", show_progress="hidden"
            )
        demo.load(show_estimate, estimate_inputs, estimate, queue=False, api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=settings.queue_max_size)
    return demo


def _estimate(runner: Runner, image, mode, quality, aspect, width, height, fov, steps, splat_iters, video) -> str:
    """The estimate line for the form's current values ("" when they are not valid yet: Generate says why)."""
    profile = getattr(runner, "profile", "offline")
    choices = dict(mode=mode, aspect=aspect, fov=fov, video=bool(video))
    if quality not in PRESETS:
        choices.update(size=(width, height), steps=steps, splat_iters=splat_iters)
    try:
        config = build_run_config(quality if quality in PRESETS else "default", **choices)
        return estimate_text(config, profile, photo_size(image))
    except (TypeError, ValueError):
        return ""


def _wire_objects(app: WorldStitchApp, runs, results, scene, pending, parts: dict, controls: list) -> None:
    """The objects panel's events: shown after each run or grow, click to place and preview, add, clear.

    Adding and clearing write the scene's files again: they queue with the jobs (one at a time) and Cancel stops
    them; the clicks and previews are quick and run beside them.
    """
    panel, view, image, note, table = (parts[name] for name in ("panel", "view", "image", "note", "table"))
    for run in runs:
        run.success(
            app.objects_panel, scene, [panel, view, image, table, pending], queue=False, api_visibility="private"
        )
    occlusion = controls[-1]
    private = dict(api_visibility="private", concurrency_limit=2, concurrency_id="objects-preview")
    view.release(app.show_view, [scene, view, occlusion], [image, pending], **private)
    image.select(app.place, [scene, view, *controls], [pending, image, note], show_progress="minimal", **private)
    for control in controls:
        listener = control.release if isinstance(control, gr.Slider) else control.change
        listener(app.adjust, [scene, pending, *controls], [image, note], show_progress="hidden", **private)
    written = [*results, table, image, pending, note]
    queued = dict(
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="gpu",
        show_progress="full",
        show_progress_on=[results[0]],
    )
    parts["add"].click(app.add_object, [scene, pending, *controls], written, **queued)
    parts["clear"].click(app.clear_objects, [scene, view, occlusion], written, **queued)


def _grow_panel(token, downloads):
    """Show the grow controls once this session has a scene; the panorama (when the scene has one) to click on."""
    names = {Path(path).name: path for path in downloads or [] if isinstance(path, str)}
    panorama = names.get("panorama.png")
    return gr.update(visible=token is not None), gr.update(value=panorama, visible=panorama is not None)


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
