"""sdmtalk: one face photo + speech -> talking-face video (Shallow Diffusion Motion model)."""

__version__ = "0.1.0"
FPS = 25  # every stage works at 25 video frames per second
SAMPLE_RATE = 16000  # every stage works on 16 kHz mono audio
MEL_PER_FRAME = 4  # 10 ms mel hop -> 4 mel frames per 40 ms video frame
