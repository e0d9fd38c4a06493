"""Load any photo as uint8 (H, W, 3) RGB: grayscale, alpha, 16-bit, palette, EXIF, huge."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sdmtalk.errors import InputError

MAX_SIDE = 2048  # larger photos are downscaled: detection and rendering gain nothing above it
MIN_SIDE = 32  # a face needs ~40 px to be found; dlib fails outright on slivers
# Pillow warns from 89 megapixels and refuses twice that as a possible decompression bomb:
# photos up to the refusal are decoded quietly (JPEG at reduced scale) and downscaled.
MAX_MEGAPIXELS = 2 * Image.MAX_IMAGE_PIXELS / 1e6

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FIX = "use a JPEG or PNG photo"


def load_image(path: str | Path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file -> uint8 (H, W, 3) RGB, long side <= max_side.

    Pillow reads it (EXIF orientation applied, alpha composited on white, 16-bit and float
    scaled to 8 bit); files Pillow cannot identify are tried with OpenCV.
    Raises InputError for missing, empty, unreadable or non-image files, and for photos over
    MAX_MEGAPIXELS (~179; Pillow's limit against decompression bombs).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"photo not found: {path}: check the path")
    if path.stat().st_size == 0:
        raise InputError(f"photo {path} is an empty file: {_FIX}")
    try:
        image = _read_with_pillow(path, max_side)
    except UnidentifiedImageError:
        image = _read_with_opencv(path)
    except Image.DecompressionBombError:
        raise InputError(f"photo {path} has over {MAX_MEGAPIXELS:.0f} megapixels, too many to decode "
                         f"safely: resize it (sdmtalk uses at most {max_side} px a side)") from None
    except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for damaged files
        raise InputError(f"photo {path} could not be decoded ({err}): {_FIX}") from err
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"photo {path} has no pixels: {_FIX}")
    image = _limit_size(image, max_side)
    if min(image.shape[:2]) < MIN_SIDE:
        h, w = image.shape[:2]
        raise InputError(
            f"photo {path} is too small or too narrow ({w}x{h} px after fitting into "
            f"{max_side} px): use a photo at least {MIN_SIDE} px on each side with the face in it"
        )
    return image


def open_image(path: str | Path) -> Image.Image:
    """Image.open without Pillow's DecompressionBombWarning (two lines on stderr for any photo
    over 89 megapixels); its DecompressionBombError beyond MAX_MEGAPIXELS stays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _read_with_pillow(path: Path, max_side: int) -> np.ndarray:
    with open_image(path) as img:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        # JPEG can decode at 1/2..1/8 scale directly: fast for huge photos.
        img.draft("RGB", (max_side, max_side))
        img.load()
        array = _to_rgb8(img)
    transpose = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    if transpose is not None:
        array = np.asarray(Image.fromarray(array).transpose(transpose))
    return np.ascontiguousarray(array)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W, 3) RGB."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return np.repeat(_scale_to_uint8(np.asarray(img))[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        return _composite_on_white(rgba[..., :3], rgba[..., 3:] / 255.0)
    return np.asarray(img.convert("RGB"))


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # Transparent backgrounds become white, like most viewers show them.
    return np.clip(rgb * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Integer or float intensities -> uint8, keeping the file's own full scale."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if np.issubdtype(values.dtype, np.floating):
        finite = np.nan_to_num(values.astype(np.float64))
        top = 1.0 if finite.max(initial=0.0) <= 1.0 else finite.max()
        return np.clip(finite / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    peak = int(values.max(initial=0))
    full_scale = 255 if peak <= 255 else 65535 if peak <= 65535 else peak
    return np.clip(values.astype(np.float64) * (255.0 / full_scale) + 0.5, 0, 255).astype(np.uint8)


def _read_with_opencv(path: Path) -> np.ndarray:
    """Second reader for formats Pillow does not identify (OpenCV: EXR, HDR, PFM, ...)."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise InputError(f"photo {path} is not an image Pillow or OpenCV can read: {_FIX}")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    image = _scale_to_uint8(image)
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    rgb = image[..., 2::-1]  # OpenCV is BGR(A)
    if channels == 4:
        return _composite_on_white(
            rgb.astype(np.float32), image[..., 3:].astype(np.float32) / 255.0
        )
    return np.ascontiguousarray(rgb)


def _limit_size(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
