"""Bundled demo inputs: espeak-ng speech shipped in the package and a public-domain photo."""

from __future__ import annotations

from pathlib import Path

from sdmtalk.errors import InputError

DEMO_SPEECH = Path(__file__).parent / "demo_speech.wav"


def demo_inputs(tmp_dir: Path) -> tuple[Path, Path]:
    """The bundled demo: scikit-image's public-domain astronaut photo + bundled espeak-ng speech."""
    from skimage import data  # heavy third-party import, needed by the demo only
    from skimage.io import imsave

    photo = Path(tmp_dir) / "demo_astronaut.png"
    imsave(photo, data.astronaut(), check_contrast=False)
    if not DEMO_SPEECH.is_file():
        raise InputError(f"demo speech {DEMO_SPEECH} is missing: reinstall sdmtalk")
    return photo, DEMO_SPEECH
