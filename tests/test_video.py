"""Video I/O: mp4 round trips, frame-rate resampling by timestamp, atomic writes, bad files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from sdmtalk import video as video_module
from sdmtalk.errors import InputError
from sdmtalk.frame_convert import PooledFrames, rgb_to_i420, to_gray, to_rgb
from sdmtalk.video import VideoClip, iter_video_frames, probe_video, read_video, write_mp4

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def index_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A flat frame whose colour encodes i (0..99): red = ones digit, green = tens digit."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = (i % 10) * 25, (i // 10) * 25, 128
    return frame


def frame_index(frame: np.ndarray) -> int:
    red, green = frame[..., 0].mean(), frame[..., 1].mean()
    return int(round(red / 25)) + 10 * int(round(green / 25))


def stream_seconds(path: Path, kind: str) -> float:
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return float(stream.duration * stream.time_base)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ---------------------------------------------------------------- writing + round trip


def test_round_trip_frames_audio_and_streams(tmp_path):
    path = tmp_path / "talk.mp4"
    calls = []
    out = write_mp4(
        path, (index_frame(i) for i in range(50)), tone(440, 2.0), progress=calls.append
    )
    assert out == path and leftovers(tmp_path, {"talk.mp4"}) == []
    assert calls == [1] * 50
    info = probe_video(path)
    assert info == dict(
        fps=25.0, frames=50, width=64, height=48, duration=pytest.approx(2.0), has_audio=True
    )
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (audio.codec_context.name, audio.codec_context.channels) == ("aac", 1)
    assert stream_seconds(path, "audio") == pytest.approx(2.0, abs=0.04)

    clip = read_video(path)
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == (50, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert [frame_index(f) for f in clip.frames] == list(range(50))
    assert clip.src_fps == 25.0 and clip.duration == pytest.approx(2.0)
    assert clip.audio.dtype == np.float32 and len(clip.audio) == 2 * SR
    t = np.arange(2 * SR) / SR
    assert (
        np.corrcoef(clip.audio[1000:-1000], 0.5 * np.sin(2 * np.pi * 440 * t)[1000:-1000])[0, 1]
        > 0.99
    )


@pytest.mark.parametrize("audio_seconds", [0.7, 2.0, 3.5])
def test_audio_is_cut_or_padded_to_the_video_length(tmp_path, audio_seconds):
    path = write_mp4(tmp_path / "a.mp4", [index_frame(0)] * 50, tone(300, audio_seconds))
    assert stream_seconds(path, "audio") == pytest.approx(2.0, abs=0.04)
    audio = read_video(path).audio
    assert len(audio) == 2 * SR
    if audio_seconds < 2.0:  # padded with silence after the speech ends
        assert np.abs(audio[int(0.8 * SR) :]).max() < 0.01
        assert np.abs(audio[: int(0.6 * SR)]).max() > 0.4


def test_video_without_audio(tmp_path):
    path = write_mp4(tmp_path / "mute.mp4", [index_frame(i) for i in range(10)], None)
    assert probe_video(path)["has_audio"] is False
    clip = read_video(path)
    assert clip.audio is None and len(clip.frames) == 10


def test_existing_file_is_replaced_only_when_complete(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old result")

    def frames_then_crash():
        for i in range(20):
            yield index_frame(i)
        raise RuntimeError("renderer failed")

    with pytest.raises(RuntimeError, match="renderer failed"):
        write_mp4(path, frames_then_crash(), tone(200, 2.0))
    assert path.read_bytes() == b"old result"
    assert leftovers(tmp_path, {"out.mp4"}) == []


def test_ctrl_c_leaves_no_temp_file(tmp_path):
    def frames_then_interrupt():
        yield index_frame(0)
        yield index_frame(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(tmp_path / "out.mp4", frames_then_interrupt(), tone(200, 1.0))
    assert leftovers(tmp_path, set()) == []


@pytest.mark.parametrize(
    "frames,message",
    [
        ([np.zeros((47, 64, 3), np.uint8)], "even frame sides"),
        ([np.zeros((48, 64, 3), np.float32)], "uint8"),
        ([np.zeros((48, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)], "all frames must be"),
        ([], "no frames"),
    ],
)
def test_bad_frames_raise_and_leave_nothing(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        write_mp4(tmp_path / "out.mp4", frames, tone(200, 1.0))
    assert leftovers(tmp_path, set()) == []


def test_output_path_that_is_a_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="output path is a folder"):
        write_mp4(tmp_path, [index_frame(0)], None)


def test_output_file_gets_normal_permissions(tmp_path):
    path = write_mp4(tmp_path / "out.mp4", [index_frame(0)] * 2, None)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_output_folder_is_an_input_error(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "out.mp4"
    with pytest.raises(InputError, match="output folder does not exist") as caught:
        write_mp4(target, [index_frame(0)], None)
    assert str(target.parent) in str(caught.value)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_read_only_output_folder_is_an_input_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot write to output folder"):
            write_mp4(folder / "out.mp4", [index_frame(0)], None)
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------- frame-rate resampling


@pytest.mark.parametrize(
    "src_fps", [Fraction(30), Fraction(50), Fraction(30000, 1001), Fraction(10)]
)
def test_resampling_to_25_fps_picks_the_latest_earlier_frame(tmp_path, src_fps):
    count = 100 if src_fps == 50 else int(2 * src_fps)  # about 2 s of source
    path = write_mp4(
        tmp_path / "src.mp4", [index_frame(i) for i in range(count)], tone(200, 2.0), fps=src_fps
    )
    assert probe_video(path)["fps"] == pytest.approx(float(src_fps), rel=1e-3)
    clip = read_video(path)
    end = Fraction(count) / src_fps  # output frame k exists while k / 25 < end
    expected_count = len([k for k in range(200) if Fraction(k, 25) < end])
    assert len(clip.frames) == expected_count
    expected = [int(Fraction(k, 25) * src_fps) for k in range(expected_count)]  # floor
    assert [frame_index(f) for f in clip.frames] == expected
    assert clip.src_fps == pytest.approx(float(src_fps), rel=1e-3)
    assert len(clip.audio) == round(expected_count * SR / 25)


def _write_with_pyav(path: Path, codec: str, fps: int, count: int, fmt: str | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(
    "name,codec",
    [("v.mkv", "libx264"), ("v.avi", "mpeg4"), ("v.mov", "libx264"), ("v.webm", "libvpx")],
)
def test_other_containers_resample_by_timestamp(tmp_path, name, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not in this FFmpeg build")
    path = _write_with_pyav(tmp_path / name, codec, fps=30, count=60)  # mkv/webm: 1 ms stamps
    frames = read_video(path).frames
    assert len(frames) == 50
    assert [frame_index(f) for f in frames] == [k * 6 // 5 for k in range(50)]


def test_iter_video_frames_streams_the_same_frames_and_downscales(tmp_path):
    frames = [index_frame(i, 96, 128) for i in range(30)]
    path = write_mp4(tmp_path / "v.mp4", frames, None, fps=30)
    streamed = list(iter_video_frames(path))
    np.testing.assert_array_equal(np.stack(streamed), read_video(path).frames)
    small = list(iter_video_frames(path, max_side=64))
    assert small[0].shape == (48, 64, 3) and len(small) == len(streamed)
    assert [frame_index(f) for f in small] == [frame_index(f) for f in streamed]
    assert list(iter_video_frames(path, max_side=500))[0].shape == (96, 128, 3)  # never upscale


def test_display_rotation_is_applied(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:24, :32] = 255  # white top-left quarter
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise, as phones store portrait video
        for i in range(5):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = i
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    info = probe_video(path)
    assert (info["width"], info["height"]) == (48, 64)
    shown = read_video(path).frames[0]
    assert shown.shape == (64, 48, 3)
    assert np.abs(shown.astype(int) - np.rot90(frame)).mean() < 8


# ---------------------------------------------------------------- reused frame buffers


def textured_frames(count: int = 8, height: int = 96, width: int = 128) -> list[np.ndarray]:
    """The astronaut photo, sliding sideways: colour and detail in every frame."""
    photo = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return [np.roll(photo, 3 * k, axis=1) for k in range(count)]


def test_pooled_frames_match_pyav(tmp_path):
    path = tmp_path / "texture.mp4"
    write_mp4(path, iter(textured_frames()), None)
    pool = PooledFrames(size=4)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert np.array_equal(pool.gray(frame), to_gray(frame))  # grey: bit for bit
            diff = np.abs(pool.rgb(frame).astype(int) - to_rgb(frame, None))
            assert diff.max() <= 16 and (diff <= 2).mean() > 0.99  # OpenCV's rounding, not swscale's
            full = frame.reformat(format="yuvj420p")  # full range: swscale itself, exactly
            assert np.array_equal(pool.rgb(full), to_rgb(full, None)) and np.array_equal(pool.gray(full), to_gray(full))
            frame.colorspace = 1  # tagged BT.709: swscale itself, exactly
            assert np.array_equal(pool.rgb(frame), to_rgb(frame, None)) and np.array_equal(pool.gray(frame), to_gray(frame))
    assert len(pool._rgb) == len(pool._gray) == 1  # no frame kept by the caller: one array each, reused


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_pooled_frames_apply_the_display_rotation(tmp_path, degrees):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.set_display_rotation(degrees)
        for i, image in enumerate(textured_frames(3)):
            video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            video_frame.pts = i
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    pool = PooledFrames(size=4)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            upright = to_rgb(frame, None)
            assert upright.shape == ((96, 128, 3) if degrees == 180 else (128, 96, 3))
            assert np.array_equal(pool.gray(frame), to_gray(frame))
            assert np.abs(pool.rgb(frame).astype(int) - upright).mean() < 1.5


def test_encoder_converts_every_frame_into_one_reused_array(tmp_path, monkeypatch):
    pools, wrap = [], video_module._video_frame

    def spy(frame, index, pool):
        pools.append(pool)
        return wrap(frame, index, pool)

    monkeypatch.setattr(video_module, "_video_frame", spy)
    frames = textured_frames(20)
    packed = write_mp4(tmp_path / "packed.mp4", iter(frames), tone(440, 0.8))
    assert len(pools) == 20 and len(pools[0]) == 1  # x264 copies its input: the planes are free again
    flipped = [f[:, ::-1] for f in frames]  # views OpenCV cannot read in place: copied first
    views = write_mp4(tmp_path / "views.mp4", iter(flipped), None)
    clip = read_video(packed)
    assert clip.frames.shape == (20, 96, 128, 3) and clip.audio is not None
    assert np.abs(clip.frames.astype(int) - np.stack(frames)).mean() < 5.0  # swscale + veryfast: 4.75
    expected = write_mp4(tmp_path / "expected.mp4", (np.ascontiguousarray(f) for f in flipped), None)
    np.testing.assert_array_equal(read_video(views).frames, read_video(expected).frames)


def test_output_is_tagged_with_the_matrix_it_was_converted_with(tmp_path):
    """Untagged, players decode HD sizes as BT.709 while the encoder converts with BT.601."""
    path = write_mp4(tmp_path / "tagged.mp4", iter(textured_frames(3)), None)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        assert (stream.codec_context.colorspace, stream.codec_context.color_range) == (6, 1)
        assert (frame.colorspace, frame.color_range) == (6, 1)  # in the H.264 stream itself


def test_rgb_to_i420_is_bt601_limited_range_with_block_mean_chroma():
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    planes = rgb_to_i420(rgb, np.empty((72, 64), np.uint8)).astype(np.float64)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    luma = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

    def blocks(c):
        return c.reshape(24, 2, 32, 2).mean((1, 3))

    assert np.abs(planes[:48] - luma).max() <= 1.0
    u, v = planes[48:60].reshape(24, 32), planes[60:].reshape(24, 32)
    assert np.abs(u - blocks(cb)).max() <= 1.5 and np.abs(v - blocks(cr)).max() <= 1.5


# ---------------------------------------------------------------- bad files


def _bad_video(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("not a video\n" * 100)
    elif kind == "audio_only":
        path = tmp_path / "speech.wav"
        with av.open(str(path), "w", format="wav") as container:
            stream = container.add_stream("pcm_s16le", rate=SR, layout="mono")
            frame = av.AudioFrame.from_ndarray(tone(200, 0.5)[None], format="flt", layout="mono")
            frame.sample_rate = SR
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
    elif kind == "truncated":  # index at the front, media cut: FFmpeg stops without an error
        full = write_mp4(
            tmp_path / "full.mp4", [index_frame(i) for i in range(100)], tone(200, 4.0)
        )
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    elif kind == "truncated_no_index":  # index would have come at the end
        full = _write_with_pyav(tmp_path / "camera.mp4", "libx264", 25, 50)  # moov at the end
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return path


@pytest.mark.parametrize(
    "kind,message",
    [
        ("missing", "video file not found"),
        ("empty", "is empty"),
        ("text", "cannot read video"),
        ("audio_only", "no video stream"),
        ("truncated", "video is truncated"),
        ("truncated_no_index", "cannot read video"),
    ],
)
def test_unreadable_videos_raise_input_error(tmp_path, kind, message):
    path = _bad_video(tmp_path, kind)
    with pytest.raises(InputError, match=message) as caught:
        read_video(path)
    assert path.name in str(caught.value) and "\n" not in str(caught.value)
    if kind != "truncated":  # the header of a truncated file is still intact
        with pytest.raises(InputError, match=message):
            probe_video(path)


# ---------------------------------------------------------------- real data


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "dev").is_dir(), reason=f"real clips not found at {DATA / 'dev'}")
def test_real_clips_read_at_25_fps():
    for path in sorted((DATA / "dev").glob("*/*.mp4")):
        info = probe_video(path)
        clip = read_video(path, max_side=128)
        source_seconds = info["frames"] / info["fps"]
        assert abs(len(clip.frames) / 25 - source_seconds) <= 0.04 + 1e-6, path.name
        assert max(clip.frames.shape[1:3]) <= 128
        assert clip.audio is not None and len(clip.audio) == round(len(clip.frames) * SR / 25)
