"""Face stage: load a photo, detect the face and its 68 landmarks, track them through a
video, and align them to the canonical template."""

from sdmtalk.face.align import Similarity, from_canonical, to_canonical, umeyama
from sdmtalk.face.detect import FaceDetection, detect_face
from sdmtalk.face.image import load_image
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.face.track import LandmarkTracker, landmark_jitter, smooth_landmarks

__all__ = [
    "CANONICAL_TEMPLATE",
    "FaceDetection",
    "LandmarkTracker",
    "Similarity",
    "detect_face",
    "from_canonical",
    "landmark_jitter",
    "load_image",
    "smooth_landmarks",
    "to_canonical",
    "umeyama",
]
