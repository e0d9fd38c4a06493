"""Training-free renderer: mesh warp of the photo along the landmarks, mouth interior, blinks."""

from sdmtalk.render.blinks import add_blinks
from sdmtalk.render.renderer import Renderer

__all__ = ["Renderer", "add_blinks"]
