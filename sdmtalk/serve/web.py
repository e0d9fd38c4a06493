"""The web page (Gradio): photo, speech (file, microphone or typed text), the CLI's
controls, a progress bar per stage, the video; a second tab dubs a video (its lips say new
speech) with `sdmtalk dub`'s controls and shows the dub's notes. It submits to the same JobManager as the
API through the same checks, so a bad input reads the same line as in the CLI.

Gradio (the optional extra, seconds to import) is imported by the functions that build the
page, so that importing this module (app.py does) costs nothing until a page is served.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sdmtalk.assets import demo_inputs
from sdmtalk.motion.types import SCALE_RANGES, SEED_MAX
from sdmtalk.pipeline import MOTIONS
from sdmtalk.serve.api import ApiError, submit_job
from sdmtalk.serve.intake import (
    DubParams,
    Params,
    build_dub_request,
    build_request,
    display_name,
    save_upload,
    stored_path,
)
from sdmtalk.serve.jobs import INTERNAL_ERROR, Job, JobManager

if TYPE_CHECKING:
    import gradio as gr

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home once gradio loads
_LOG = logging.getLogger(__name__)
STAGE_NAMES = {"face": "finding the face", "audio": "reading the speech", "motion": "generating motion",
               "video": "tracking the face in the video"}


def demo_files(folder: Path) -> list[str]:
    """The bundled demo photo and speech, copied where the page may serve them."""
    folder.mkdir(parents=True, exist_ok=True)
    photo, speech = demo_inputs(folder)
    shutil.copy(speech, folder / speech.name)
    return [str(photo), str(folder / speech.name)]


def stage_text(job: Job) -> str:
    if job.state == "queued":
        return "waiting in the queue"
    if job.stage.startswith("render"):
        return f"rendering and encoding {job.stage[len('render '):]} ({job.done}/{job.total} frames)"
    return STAGE_NAMES.get(job.stage, "starting")


def _copy_in(job: Job, path: str | None, role: str, limit: int) -> Path | None:
    """A file Gradio received -> the job's folder (under a name the server picks)."""
    if not path:
        return None
    name = display_name(Path(path).name, role)
    dest = stored_path(job, role, name)
    job.names[dest] = name
    with open(path, "rb") as src:
        save_upload(src, dest, role, name, limit)
    return dest


def make_generate(manager: JobManager):
    """The page's Generate handler: submit through the API's path, follow the job's stages."""
    import gradio as gr

    config = manager.config

    def generate(photo, audio, text, seed, num_samples, pose_scale, lip_scale, rhythm_scale, still,
                 diffusion_steps, size, crop, motion, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
        params = Params(_whole(seed), _whole(num_samples), pose_scale, lip_scale, rhythm_scale, bool(still),
                        diffusion_steps, _whole(size), crop, motion)

        def fill(job: Job):
            photo_path = _copy_in(job, photo, "photo", config.max_upload_bytes)
            audio_path = _copy_in(job, audio, "audio", config.max_upload_bytes)
            return build_request(job, config, photo_path, audio_path, text, params)

        job = _run_job(manager, fill, progress)
        videos = [str(v) for v in job.videos]
        note = f"{len(videos)} video(s), kept on the server for {config.result_ttl_s / 60:g} min"
        return videos[0], videos, note

    return generate


def make_dub(manager: JobManager):
    """The page's Dub handler: the API's dub path, its notes shown as plain lines."""
    import gradio as gr

    config = manager.config

    def dub(video, audio, text, seed, lip_scale, keep_video_length, progress=gr.Progress()):  # noqa: B008
        params = DubParams(_whole(seed), lip_scale, keep_video_length=bool(keep_video_length))

        def fill(job: Job):
            video_path = _copy_in(job, video, "video", config.max_upload_bytes)
            audio_path = _copy_in(job, audio, "audio", config.max_upload_bytes)
            return build_dub_request(job, config, video_path, audio_path, text, params)

        job = _run_job(manager, fill, progress)
        kept = f"kept on the server for {config.result_ttl_s / 60:g} min"
        return str(job.videos[0]), "\n".join([*job.notes, f"the dubbed video is {kept}"])

    return dub


def _run_job(manager: JobManager, fill, progress) -> Job:
    """Submit through the API's path and follow the job's stages -> the finished job; any
    refusal or failure becomes the page's error line (gr.Error), never a trace."""
    import gradio as gr

    try:
        job = submit_job(manager, fill)
    except ApiError as err:
        raise gr.Error(err.message, print_exception=False) from None
    except Exception:
        _LOG.exception("page request failed")
        raise gr.Error(INTERNAL_ERROR, print_exception=False) from None
    while job.state in ("queued", "running"):
        progress(job.fraction, desc=stage_text(job))
        time.sleep(0.2)
    if job.state != "done":
        raise gr.Error(job.error or INTERNAL_ERROR, print_exception=False)
    return job


def _whole(value):
    """Gradio numbers arrive as floats; whole ones become ints (others are left to the checks)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def build_page(manager: JobManager) -> gr.Blocks:
    import gradio as gr

    config = manager.config
    busy = config.workers + config.queue
    with gr.Blocks(title="sdmtalk", analytics_enabled=False,
                   delete_cache=(max(60, int(config.result_ttl_s) // 2), max(60, int(config.result_ttl_s)))) as page:
        gr.Markdown("# sdmtalk\nOne face photo + speech -> a talking-face video; or a video's lips dubbed "
                    "with new speech. The HTTP API and its documentation: [/docs](/docs).")
        with gr.Tabs():
            with gr.Tab("Make a video", elem_id="generate-tab"):
                _generate_tab(manager, busy)
            with gr.Tab("Dub a video", elem_id="dub-tab"):
                _dub_tab(manager, busy)
    page.queue(max_size=busy)
    _quiet_when_idle(page._queue)
    return page


def _generate_tab(manager: JobManager, busy: int) -> None:
    """Photo + speech -> a talking-face video (`sdmtalk generate` on the page)."""
    import gradio as gr

    config = manager.config
    lo, hi = {k: v[0] for k, v in SCALE_RANGES.items()}, {k: v[1] for k, v in SCALE_RANGES.items()}
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", sources=["upload", "webcam"], label="Face photo", elem_id="photo",
                             height=320)
            audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Speech", elem_id="audio")
            text = gr.Textbox(label="...or text to speak (used when there is no speech above)", elem_id="text")
            with gr.Accordion("Controls", open=False):
                seed = gr.Number(0, label=f"Seed (0 to {SEED_MAX})", precision=0)
                samples = gr.Slider(1, config.max_samples, 1, step=1, label="Videos (different head motion)")
                pose = gr.Slider(lo["pose_scale"], hi["pose_scale"], 1.0, step=0.05, label="Pose scale")
                lip = gr.Slider(lo["lip_scale"], hi["lip_scale"], 1.0, step=0.05, label="Lip scale")
                rhythm = gr.Slider(lo["rhythm_scale"], hi["rhythm_scale"], 1.0, step=0.05, label="Rhythm scale")
                still = gr.Checkbox(False, label="Still head (lips and blinks only)")
                steps = gr.Textbox("auto", label="Diffusion steps: auto, K or 0")
                size = gr.Radio([256, 512], value=256, label="Face crop size")
                crop = gr.Radio(["face", "full"], value="face", label="Crop")
                motion = gr.Dropdown(list(MOTIONS), value=config.motion, label="Motion")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Column():
            video = gr.Video(label="Video", elem_id="video", interactive=False, height=420)
            files = gr.File(label="Download", file_count="multiple", elem_id="downloads", interactive=False)
            note = gr.Markdown(elem_id="note")
    gr.Examples([demo_files(manager.work_dir / "demo")], inputs=[photo, audio], label="Demo (click, then Generate)")
    button.click(make_generate(manager),
                 [photo, audio, text, seed, samples, pose, lip, rhythm, still, steps, size, crop, motion],
                 [video, files, note], concurrency_limit=busy)


def _dub_tab(manager: JobManager, busy: int) -> None:
    """`sdmtalk dub` on the page: a video, new speech (file, microphone or text), its controls."""
    import gradio as gr

    lo, hi = SCALE_RANGES["lip_scale"]
    with gr.Row():
        with gr.Column():
            # include_audio: the upload is passed on as sent (no ffmpeg re-encode by Gradio)
            video = gr.Video(sources=["upload"], include_audio=True, label="Video to dub (one person talking)",
                             elem_id="dub_video", height=320)
            audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="New speech",
                             elem_id="dub_audio")
            text = gr.Textbox(label="...or text to speak (used when there is no speech above)", elem_id="dub_text")
            with gr.Accordion("Controls", open=False):
                seed = gr.Number(0, label=f"Seed (0 to {SEED_MAX})", precision=0, elem_id="dub_seed")
                lip = gr.Slider(lo, hi, 1.0, step=0.05, label="Lip scale", elem_id="dub_lip_scale")
                keep = gr.Checkbox(False, label="Keep the video's length (pad or trim the speech; default: the "
                                   "video follows the speech, played forward and backward if shorter)",
                                   elem_id="dub_keep_length")
            button = gr.Button("Dub", variant="primary", elem_id="dub_button")
        with gr.Column():
            out = gr.Video(label="Dubbed video", elem_id="dub_output", interactive=False, height=420)
            notes = gr.Textbox(label="Notes", elem_id="dub_notes", interactive=False, lines=3)
    button.click(make_dub(manager), [video, audio, text, seed, lip, keep], [out, notes], concurrency_limit=busy)


def _quiet_when_idle(queue) -> None:
    """Gradio's queue polls for work every 1 ms and for progress every 10 ms even when no one
    visits (7 % of a core, idle); its own Windows values, 50 and 100 ms, bring that under
    0.5 %: a click waits at most 50 ms more to start a job that takes seconds."""
    queue.sleep_when_free = max(queue.sleep_when_free, 0.05)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 0.1)


def mount_page(app, manager: JobManager):
    """`app` with the page mounted at /, its uploads and videos served from the job folders."""
    import gradio as gr

    # System fonts: the default theme would fetch Google Fonts, which an offline machine cannot.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    return gr.mount_gradio_app(app, build_page(manager), path="/", allowed_paths=[str(manager.work_dir)],
                               max_file_size=manager.config.max_upload_bytes, show_error=True, ssr_mode=False,
                               footer_links=[], theme=theme)
