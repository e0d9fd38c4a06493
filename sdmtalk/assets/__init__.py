"""Bundled demo inputs (espeak-ng speech shipped in the package and a public-domain photo) and
dlib's frontal face detector saved as a file (dlib is Boost-licensed)."""

from __future__ import annotations

from pathlib import Path

from sdmtalk.errors import InputError

DEMO_SPEECH = Path(__file__).parent / "demo_speech.wav"
# dlib.get_frontal_face_detector().save(...) of dlib 20.0: the same detector, read in ~3 ms
# instead of the ~0.6 s get_frontal_face_detector takes to decode it from its source text.
HOG_FACE_DETECTOR = Path(__file__).parent / "frontal_face_detector.svm"


def demo_inputs(tmp_dir: Path) -> tuple[Path, Path]:
    """The bundled demo: scikit-image's public-domain astronaut photo + bundled espeak-ng speech."""
    from skimage import data  # heavy third-party import, needed by the demo only
    from skimage.io import imsave

    photo = Path(tmp_dir) / "demo_astronaut.png"
    imsave(photo, data.astronaut(), check_contrast=False)
    if not DEMO_SPEECH.is_file():
        raise InputError(f"demo speech {DEMO_SPEECH} is missing: reinstall sdmtalk")
    return photo, DEMO_SPEECH
