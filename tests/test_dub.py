"""sdmtalk dub: a video's own frames with new speech on its lips."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from sdmtalk import SAMPLE_RATE, memory
from sdmtalk.cli import main
from sdmtalk.dub import dubber as dubber_module
from sdmtalk.dub import speech_motion
from sdmtalk.dub.dubber import Dubber
from sdmtalk.dub.lips import SPEECH_WEIGHTS, dub_target, median_rest, steady_rest
from sdmtalk.dub.speech_motion import SpeechMotion
from sdmtalk.dub.timeline import pingpong, plan_timeline
from sdmtalk.dub.video_face import TrackRows
from sdmtalk.face import detect_face
from sdmtalk.face.align import lip_gap
from sdmtalk.face.mouth_state import rest_mouth
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.frame_source import VideoFrames
from sdmtalk.motion.types import Motion, MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.render.dub import DubRenderer
from sdmtalk.render.mouth import MouthFiller
from sdmtalk.video import read_video, write_mp4

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def face_video(stream_media, tmp_path_factory):
    """(a 2 s 256 px talking-face mp4 made from the astronaut photo, its speech path)."""
    folder, speech = stream_media
    out = tmp_path_factory.mktemp("dub") / "face.mp4"
    short = folder / "speech2s.wav"
    sf.write(short, speech[: 2 * SAMPLE_RATE], SAMPLE_RATE)
    TalkingFacePipeline(motion="linear", quiet=True, threads=1).generate(folder / "face.png", short, out)
    return out, folder / "speech.wav"


def _numbered_video(path: Path, count: int) -> list[np.ndarray]:
    """A video whose frame k is a flat grey level 4k (a different picture in every frame)."""
    frames = [np.full((64, 96, 3), (4 * k) % 256, np.uint8) for k in range(count)]
    write_mp4(path, iter(frames), None, fps=25)
    return frames


def test_pingpong_has_no_jump():
    order = pingpong(25, 6)
    assert order.tolist() == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert np.abs(np.diff(order)).max() == 1
    assert pingpong(3, 1).tolist() == [0, 0, 0]


def test_timeline_follows_the_audio_or_keeps_the_video():
    fps, samples = Fraction(25), SAMPLE_RATE * 2  # 2 s = 50 frames
    cut = plan_timeline(samples, 100, fps, keep_video_length=False)
    assert cut.frames == 50 and "cut" in cut.note and cut.samples == samples
    loop = plan_timeline(samples, 20, fps, keep_video_length=False)
    assert loop.frames == 50 and "forward and backward" in loop.note
    padded = plan_timeline(samples, 100, fps, keep_video_length=True)
    assert padded.frames == 100 and padded.samples == 4 * SAMPLE_RATE and "padded" in padded.note
    trimmed = plan_timeline(samples, 20, fps, keep_video_length=True)
    assert trimmed.frames == 20 and trimmed.samples == int(0.8 * SAMPLE_RATE) and "trimmed" in trimmed.note
    assert plan_timeline(samples, 50, fps, keep_video_length=False).note == ""


def test_frame_source_reads_any_order_like_the_scan(tmp_path, monkeypatch):
    path = tmp_path / "numbers.mp4"
    _numbered_video(path, 40)
    video = VideoFrames(path)
    scanned = [f.copy() for f in video.scan()]
    assert len(video) == 40 and video.fps == 25 and not video.variable_rate
    monkeypatch.setattr("sdmtalk.frame_source.BLOCK_BYTES", 64 * 96 * 3 * 5)  # backward blocks of 5 frames
    order = pingpong(100, 40)
    for k, frame in zip(order, video.read(order), strict=True):
        assert np.array_equal(frame, scanned[k]), k
    limited = VideoFrames(path)
    assert len(list(limited.scan(limit=10))) == 10 and len(limited) == 10


def test_dub_renderer_changes_only_the_lower_face(face_video):
    path, _ = face_video
    frame = read_video(path).frames[10]
    source = detect_face(frame).landmarks.astype(np.float64)
    rest = rest_mouth(source)
    renderer = DubRenderer(frame, source)
    target = rest.copy()
    target[[56, 57, 58, 65, 66, 67, 7, 8, 9], 1] += 6  # open the mouth, drop the chin
    out = renderer.render(frame, source, rest, target)
    ring = renderer.ring(source)
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(ring).astype(np.int32)], 1)
    outside = ~inside.astype(bool)
    assert np.array_equal(out[outside], frame[outside])  # bit for bit
    changed = np.abs(out.astype(int) - frame).max(axis=2) > 20
    assert changed[inside.astype(bool)].sum() > 50  # the mouth moved
    ys, xs = np.nonzero(changed)
    assert ys.min() > source[30, 1]  # nothing above the nose tip changed
    still = renderer.render(frame, source, source, source)  # no motion: (almost) the frame itself
    assert np.abs(still.astype(int) - frame).max() <= 2


def test_dub_renderer_seals_an_open_frame_without_a_drawn_seam(face_video, monkeypatch):
    """A frame whose own mouth is open is sealed and closed, but gets no painted seam: frames
    are sealed only where the video's old speech opened them, so a drawn line would follow it."""
    path, _ = face_video
    frame = read_video(path).frames[10]
    source = detect_face(frame).landmarks.astype(np.float64)
    wide = source.copy()
    wide[[56, 57, 58, 65, 66, 67], 1] += 8  # the frame's mouth as if open
    rest = rest_mouth(wide)
    assert np.abs(rest - wide).max() >= 0.25  # sealed
    drawn = []
    monkeypatch.setattr("sdmtalk.render.mouth.draw_seam", lambda *a: drawn.append(a))
    DubRenderer(frame, source).render(frame, wide, rest, rest)
    assert drawn == []
    filler = MouthFiller(frame, rest, sealed=True)  # a photo's lips sealed at rest do get it
    filler.apply(frame.copy(), rest)
    assert len(drawn) == 1


def test_targets_move_only_mouth_and_jaw():
    rng = np.random.default_rng(0)
    face = (CANONICAL_TEMPLATE * 100 + 200).astype(np.float32)
    median = median_rest(np.stack([face, np.full((68, 2), np.nan, np.float32)]))
    rest, steady, sims = steady_rest(face, median)
    fixed = SPEECH_WEIGHTS == 0
    assert np.allclose(rest[fixed], face[fixed], atol=1e-3)  # only the mouth and jaw take the rest shape
    delta = rng.normal(0, 0.05, (3, 68, 2)).astype(np.float32)
    target = dub_target(steady, sims, delta[0])
    assert np.allclose(target[fixed], face[fixed], atol=1e-3)
    assert np.abs(target[48:68] - rest[48:68]).max() > 1


def _ramp_lips(wav, fps, offset_per_segment=0.0):
    """SpeechMotion over stand-in stages: each speech frame's delta is its samples' mean
    (the same whatever segment makes it), plus an offset that differs per segment."""
    made = []

    def features(audio, progress, stop):
        return audio

    def motion(audio, canonical, controls, report):
        made.append(report)
        frames = audio[: len(audio) // 640 * 640].reshape(-1, 640).mean(1)
        frames = np.pad(frames, (0, speech_motion.num_frames_for(len(audio)) - len(frames)), mode="edge")
        delta = np.repeat(frames[:, None, None], 68, 1).repeat(2, 2) + offset_per_segment * len(made)
        return Motion(np.zeros((len(delta), 4), np.float32), delta.astype(np.float32))

    lips = SpeechMotion(wav, features, motion, MotionControls(still=True), fps)
    lips.begin(np.zeros((68, 2), np.float32))
    return lips, made


def test_speech_motion_resamples_to_the_video_rate():
    wav = np.repeat(np.arange(3, dtype=np.float32), 640)  # speech frames 0, 1, 2
    lips, made = _ramp_lips(wav, Fraction(50))  # 50 fps: every other frame is a midpoint
    assert lips.count == 1 and made == []  # the motion waits for the first frame asked
    assert np.allclose(lips.delta(2), 1) and np.allclose(lips.delta(1), 0.5) and np.allclose(lips.delta(9), 2)
    assert made == [True]
    lips.stop()


def test_long_speech_is_made_in_segments_that_meet_without_a_step(monkeypatch):
    monkeypatch.setattr(speech_motion, "SEGMENT", 40)
    monkeypatch.setattr(speech_motion, "LONG", 60)
    monkeypatch.setattr(speech_motion, "MARGIN", 8)
    monkeypatch.setattr(speech_motion, "FADE", 4)
    wav = np.repeat(np.linspace(0, 1, 170, dtype=np.float32), 640)  # 170 frames: 5 segments of 34
    lips, made = _ramp_lips(wav, Fraction(25))
    whole = np.linspace(0, 1, 170)
    got = np.array([lips.delta(i)[0, 0] for i in range(170)])
    assert lips.count == 5 and lips.length == 34
    assert np.allclose(got, whole, atol=1e-6)  # the same numbers as one piece where stages agree
    assert made == [True, False, False, False, False] and len(lips._made) <= 2  # one bar; old ones forgotten
    lips.stop()
    stepped, _ = _ramp_lips(wav, Fraction(25), offset_per_segment=0.1)  # each segment 0.1 higher
    steps = np.diff([stepped.delta(i)[0, 0] for i in range(170)]) - np.diff(whole)
    assert np.abs(steps).max() <= 0.1 / 8 + 1e-6  # the jump is spread over the 8-frame fade
    stepped.stop()


def test_dub_end_to_end(face_video, tmp_path):
    path, speech = face_video  # 2 s of video, the speech is longer: the video plays ping-pong
    out = tmp_path / "dubbed.mp4"
    pipe = TalkingFacePipeline(quiet=True, threads=2)
    res = pipe.dub(path, speech, out, MotionControls(seed=3))
    seconds = sf.info(str(speech)).duration
    clip = read_video(out)
    assert abs(clip.duration - seconds) < 0.1 and clip.frames.shape[1:] == (256, 256, 3)
    assert any("forward and backward" in n for n in res.notes)
    assert np.abs(np.diff(res.order)).max() == 1  # no jump in the source frames
    source = read_video(path)
    top = slice(0, 80)  # forehead and hair: never touched (only re-encoded)
    diff = np.abs(clip.frames[: len(source.frames), top].astype(int) - source.frames[:, top]).mean()
    assert diff < 3
    kept = tmp_path / "kept.mp4"
    res = pipe.dub(path, speech, kept, keep_video_length=True)
    assert res.frames == len(source.frames) and abs(read_video(kept).duration - 2.0) < 0.1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp file left


def test_dub_closes_the_video_mouth_in_silence(face_video, tmp_path):
    path, _ = face_video
    pipe = TalkingFacePipeline(quiet=True, threads=1)
    dubber = Dubber(pipe.features, pipe._still_motion, threads=1)
    job = dubber.start(path, np.zeros(SAMPLE_RATE, np.float32), MotionControls())
    job.targets = []
    frames = list(dubber.frames(job))
    landmarks, valid = job.track.tracked()
    assert len(frames) == len(job.order) == len(job.targets) == 25
    gaps_in = [lip_gap(landmarks[j]) for j in job.order if valid[j]]
    gaps_out = [lip_gap(t) for t in job.targets if np.isfinite(t).all()]
    assert max(gaps_out) < max(gaps_in)  # the video's speech does not show through
    assert np.median(gaps_out) <= np.median(gaps_in) + 0.5


def test_dub_looks_at_its_memory_while_rendering(face_video, monkeypatch):
    looks = []
    monkeypatch.setattr(dubber_module, "WATCH_EVERY", 5)
    monkeypatch.setattr(memory.HeapWatch, "check", lambda self: looks.append(1))
    path, _ = face_video
    pipe = TalkingFacePipeline(quiet=True, threads=1)
    dubber = Dubber(pipe.features, pipe._still_motion, threads=1)
    frames = list(dubber.frames(dubber.start(path, np.zeros(SAMPLE_RATE, np.float32), MotionControls())))
    assert len(frames) == 25 and len(looks) == 5


def test_heap_watch_releases_only_when_memory_grew(monkeypatch):
    sizes = iter([500, 520, 560, 530, 570, 640, 600])  # each look; after a release, the level it left
    released = []
    monkeypatch.setattr(memory, "resident_mb", lambda: next(sizes))
    monkeypatch.setattr(memory, "release_free_memory", lambda: released.append(1))
    watch = memory.HeapWatch(slack_mb=48)
    for _ in range(5):
        watch.check()
    # 500 sets the level; 520 stays; 560 > 548: release, level 530; 570 stays (< 578); 640: release
    assert watch.releases == len(released) == 2 and watch.level == 600


def test_heap_watch_settles_once_when_a_stage_ends(monkeypatch):
    sizes = iter([500, 530, 510, 560, 600])
    released = []
    monkeypatch.setattr(memory, "resident_mb", lambda: next(sizes))
    monkeypatch.setattr(memory, "release_free_memory", lambda: released.append(1))
    watch = memory.HeapWatch(slack_mb=48)
    watch.check()  # level 500
    watch.settle()  # the tracking ended: release at once, level 530 after it
    watch.settle()  # only once
    watch.check()  # 510: stays
    watch.check()  # 560 < 578: stays
    assert released == [1] and watch.level == 530 and watch.settled


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_face", "no face found in"),
        ("audio_as_video", "no video stream in"),
        ("not_mp4", "does not end in .mp4"),
        ("face_index", "--face-index 3 is out of range"),
        ("long_text", "--text has 1001 characters"),
    ],
)
def test_dub_bad_inputs_one_line(case, message, face_video, stream_media, tmp_path, capsys):
    path, speech = face_video
    out = tmp_path / "out.mp4"
    args = ["dub", "--video", str(path), "--audio", str(speech), "-o", str(out), "-q"]
    if case == "no_face":
        wall = tmp_path / "wall.mp4"
        write_mp4(wall, iter([np.full((64, 64, 3), 90, np.uint8)] * 10), None)
        args[2] = str(wall)
    elif case == "audio_as_video":
        args[2] = str(speech)
    elif case == "not_mp4":
        args[6] = str(tmp_path / "out.avi")
    elif case == "face_index":
        args += ["--face-index", "3"]
    elif case == "long_text":
        args[3:5] = ["--text", "a" * 1001]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real clips; absent in a fresh clone)")
def test_dub_real_clip_keeps_the_frame_outside_the_lower_face(tmp_path):
    videos = sorted((SHARED / "dev").glob("hdtf-wda-*/*.mp4"))
    if len(videos) < 2:
        pytest.skip("needs two HDTF dev clips in ../shared/data/dev")
    speech = tmp_path / "speech.wav"
    wav = read_video(videos[1]).audio[: 3 * SAMPLE_RATE]
    sf.write(speech, wav, SAMPLE_RATE)
    pipe = TalkingFacePipeline(quiet=True, threads=1)
    dubber = Dubber(pipe.features, pipe._still_motion, threads=1)
    job = dubber.start(videos[0], wav, MotionControls())
    dubbed = list(dubber.frames(job))[:20]
    originals = list(job.video.read(job.order[:20]))
    landmarks = job.track.tracked()[0]
    moved = 0
    for j, frame, new in zip(job.order[:20], originals, dubbed, strict=True):
        eyes_row = int(np.nanmax(landmarks[j, 36:48, 1]))
        assert np.array_equal(new[:eyes_row], frame[:eyes_row])  # above the eyes' lowest point: bit-exact
        moved += int(np.abs(new.astype(int) - frame).max() > 10)
    assert moved >= 10


def _speech_cut(face_video, folder: Path, seconds: float) -> Path:
    wav, rate = sf.read(str(face_video[1]), dtype="float32")
    path = folder / "speech_cut.wav"
    sf.write(path, wav[: int(seconds * rate)], rate)
    return path


def _face_frames(face_video, count: int) -> list[np.ndarray]:
    return list(read_video(face_video[0]).frames[:count])


def _write(path: Path, frames, pts=None, rotation=None, rate=25) -> Path:
    """frames as H.264 with the given presentation times (in 1/rate units) and display rotation."""
    import av  # noqa: PLC0415 (only these writers use PyAV directly)

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i if pts is None else pts[i]
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


def test_dub_notes_two_faces_and_a_variable_frame_rate(face_video, tmp_path):
    frames = _face_frames(face_video, 25)
    pair = [np.hstack([f, f[:, ::-1]]) for f in frames]
    pts = np.cumsum([0] + [1 if i % 3 else 3 for i in range(1, 25)])  # gaps: a phone's variable rate
    path = _write(tmp_path / "pair.mp4", pair, pts=pts.tolist())
    speech = _speech_cut(face_video, tmp_path, 1.0)
    res = TalkingFacePipeline(quiet=True, threads=1).dub(path, speech, tmp_path / "out.mp4")
    notes = " | ".join(res.notes)
    assert "2 faces" in notes and "variable frame rate" in notes, notes
    right = TalkingFacePipeline(quiet=True, threads=1).dub(path, speech, tmp_path / "right.mp4", face_index=1)
    assert read_video(right.path).frames.shape[1:] == (256, 512, 3)


def test_dub_portrait_phone_video_keeps_its_size(face_video, tmp_path):
    """A 1080x1920 portrait video stored landscape with a display rotation (as phones do)."""
    frames = [cv2.resize(f, (1080, 1080)) for f in _face_frames(face_video, 12)]
    tall = [np.vstack([np.full((420, 1080, 3), 30, np.uint8), f, np.full((420, 1080, 3), 30, np.uint8)])
            for f in frames]
    stored = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in tall]  # 1920 wide, 1080 high
    path = _write(tmp_path / "phone.mp4", stored, rotation=90)
    speech = _speech_cut(face_video, tmp_path, 0.5)
    res = TalkingFacePipeline(quiet=True, threads=2).dub(path, speech, tmp_path / "out.mp4")
    out = read_video(res.path).frames
    assert out.shape[1:] == (1920, 1080, 3)
    assert np.abs(out[:, :400].astype(int) - 30).max() < 6  # the band above the face is as filmed


@pytest.mark.parametrize("case, message", [("truncated", "video is truncated"), ("8k", "up to 4096 px")])
def test_dub_broken_or_huge_video_one_line(case, message, face_video, tmp_path, capsys):
    path, speech = face_video
    if case == "truncated":
        data = path.read_bytes()
        video = tmp_path / "cut.mp4"
        video.write_bytes(data[: len(data) * 2 // 3])
    else:
        video = _write(tmp_path / "8k.mp4", [np.zeros((4320, 7680, 3), np.uint8)] * 2)
    out = tmp_path / "out.mp4"
    assert main(["dub", "--video", str(video), "--audio", str(speech), "-o", str(out), "-q",
                 "--keep-video-length"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_generate_speaks_typed_text(stream_media, tmp_path, capsys):
    folder, _ = stream_media
    out = tmp_path / "said.mp4"
    assert main(["generate", "--image", str(folder / "face.png"), "--text", "Hello there.", "-o", str(out), "-q",
                 "--motion", "linear"]) == 0
    assert read_video(out).duration > 0.5
    both = ["generate", "--image", str(folder / "face.png"), "--text", "Hi", "--audio", str(folder / "speech.wav"),
            "-o", str(tmp_path / "both.mp4"), "-q"]
    assert main(both) == 2
    assert capsys.readouterr().err.strip() == "sdmtalk: error: both --audio and --text: give one of them"


def test_track_rows_spill_to_disk_and_read_back():
    rows = np.random.default_rng(0).normal(size=(3 * TrackRows.BLOCK + 100, 68, 2)).astype(np.float32)
    rows[5] = np.nan
    track = TrackRows()
    for a in range(0, len(rows), 8):  # as FaceTrack publishes: a few frames at a time
        track.extend(rows[a:a + 8])
    assert track._file is not None and track._file.tell() == 3 * TrackRows.BLOCK * TrackRows.ROW_BYTES
    for j in [0, 5, TrackRows.BLOCK - 1, TrackRows.BLOCK, 2 * TrackRows.BLOCK + 7, len(rows) - 1]:
        assert np.array_equal(track[j], rows[j], equal_nan=True)  # from the file, the last block, the tail
    assert np.array_equal(track.all(), rows, equal_nan=True)
    assert list(np.flatnonzero(np.frombuffer(bytes(track.valid), np.uint8) == 0)) == [5]
