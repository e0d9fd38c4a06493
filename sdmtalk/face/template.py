"""The canonical 68-point face template (iBUG 300-W mean shape) and the left/right flip map.

Where the numbers come from: dlib's shape_predictor_68_face_landmarks.dat (shipped by
face-recognition-models) stores as its `initial_shape` the mean of the iBUG 300-W training
shapes (mirrored copies included), in the coordinates of the face detector's box: (0, 0)
is the box's top-left corner, (1, 1) its bottom-right. `read_dlib_mean_shape` parses it
from the model file; DLIB_MEAN_SHAPE is that output rounded to 6 decimals (a test checks
they agree). CANONICAL_TEMPLATE is the same shape made exactly left/right symmetric,
centred at the origin and scaled to an inter-ocular distance (outer eye corners 36-45) of
1, with y pointing down as in images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# fmt: off
DLIB_MEAN_SHAPE = np.array([
    (0.029446, 0.321950), (0.032626, 0.446431), (0.045943, 0.570428), (0.071791, 0.692023),  # 0-3
    (0.120274, 0.804951), (0.194731, 0.902886), (0.285819, 0.984597), (0.386310, 1.050212),  # 4-7
    (0.500003, 1.069708), (0.613697, 1.050210), (0.714190, 0.984596), (0.805277, 0.902887),  # 8-11
    (0.879741, 0.804952), (0.928229, 0.692024), (0.954078, 0.570430), (0.967397, 0.446431),  # 12-15
    (0.970579, 0.321947), (0.119182, 0.230909), (0.177509, 0.178388), (0.259835, 0.162735),  # 16-19
    (0.345086, 0.174880), (0.424904, 0.208063), (0.575140, 0.208059), (0.654959, 0.174876),  # 20-23
    (0.740211, 0.162732), (0.822538, 0.178384), (0.880866, 0.230908), (0.500021, 0.305547),  # 24-27
    (0.500017, 0.385739), (0.500015, 0.465222), (0.500011, 0.547027), (0.404506, 0.602343),  # 28-31
    (0.450375, 0.619234), (0.500013, 0.633663), (0.549654, 0.619236), (0.595526, 0.602348),  # 32-35
    (0.213870, 0.315571), (0.264750, 0.286316), (0.325858, 0.287176), (0.379375, 0.327564),  # 36-39
    (0.322083, 0.337778), (0.261248, 0.336975), (0.620667, 0.327560), (0.674184, 0.287173),  # 40-43
    (0.735291, 0.286312), (0.786169, 0.315570), (0.738790, 0.336972), (0.677958, 0.337776),  # 44-47
    (0.317107, 0.751117), (0.384429, 0.724204), (0.452547, 0.710256), (0.500013, 0.721995),  # 48-51
    (0.547484, 0.710262), (0.615600, 0.724211), (0.682923, 0.751117), (0.617772, 0.816892),  # 52-55
    (0.551586, 0.846004), (0.500013, 0.851504), (0.448439, 0.846000), (0.382257, 0.816887),  # 56-59
    (0.345192, 0.754674), (0.451943, 0.749935), (0.500013, 0.755041), (0.548087, 0.749940),  # 60-63
    (0.654835, 0.754675), (0.549021, 0.785685), (0.500015, 0.791599), (0.451010, 0.785681),  # 64-67
], dtype=np.float64)

# Index of each point's mirror image (left <-> right) in the iBUG 68 layout.
FLIP_PERMUTATION = np.array(
    list(range(16, -1, -1))                      # jaw 0-16
    + list(range(26, 16, -1))                    # brows 17-21 <-> 22-26
    + [27, 28, 29, 30]                           # nose bridge
    + [35, 34, 33, 32, 31]                       # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]           # inner lips
)
# fmt: on

LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45  # the inter-ocular distance is measured between these


def mirror_shape(shape: np.ndarray) -> np.ndarray:
    """Mirror (..., 68, 2) landmarks about x = 0 and relabel left/right points."""
    flipped = shape[..., FLIP_PERMUTATION, :].copy()
    flipped[..., 0] *= -1
    return flipped


def _canonicalize(mean_shape: np.ndarray) -> np.ndarray:
    """Symmetrise, centre and scale a (68, 2) shape into the canonical frame."""
    centred = mean_shape - mean_shape.mean(axis=0)
    symmetric = 0.5 * (centred + mirror_shape(centred))
    symmetric -= symmetric.mean(axis=0)
    iod = np.linalg.norm(symmetric[RIGHT_EYE_OUTER] - symmetric[LEFT_EYE_OUTER])
    return symmetric / iod


CANONICAL_TEMPLATE = _canonicalize(DLIB_MEAN_SHAPE).astype(np.float32)
CANONICAL_TEMPLATE.setflags(write=False)


def read_dlib_mean_shape(model_path: str | Path) -> np.ndarray:
    """Parse the mean shape (68, 2) stored at the start of a dlib 68-point shape predictor.

    dlib's format: a version int, then `initial_shape` as a matrix (-rows, -cols) of
    floats; ints are a header byte (size | 0x80 if negative) plus little-endian bytes,
    floats an int mantissa and an int exponent (value = m * 2**e).
    """
    buf = Path(model_path).read_bytes()[:4096]
    pos = 0

    def read_int() -> int:
        nonlocal pos
        header = buf[pos]
        size = header & 0x0F
        value = int.from_bytes(buf[pos + 1 : pos + 1 + size], "little")
        pos += 1 + size
        return -value if header & 0x80 else value

    version, rows, cols = read_int(), -read_int(), -read_int()
    if version != 1 or (rows, cols) != (136, 1):
        raise ValueError(f"{model_path} is not a dlib 68-point shape predictor")
    values = [read_int() * 2.0 ** read_int() for _ in range(rows)]
    return np.asarray(values, dtype=np.float64).reshape(68, 2)
