"""Streaming: speech in as it arrives, talking-face frames out as they are ready.

audio.py    AudioWindow: pushed audio -> features of recent frames (offline functions, sliding window)
motion.py   MotionStream: SDM step by step (G_c state carried, diffusion inpainted on emitted frames)
pacing.py   FramePacer: which committed frame renders next (late ones skipped), latency and drops
session.py  SpeechToMotion (audio -> motion spans, no threads), stream_motion (a whole wav, for
            evaluation), FaceStream: motion thread -> render thread -> on_frame(frame, index)
"""

from sdmtalk.stream.audio import AudioWindow
from sdmtalk.stream.motion import MotionStream, StreamConfig
from sdmtalk.stream.pacing import hold_skipped
from sdmtalk.stream.session import FaceStream, SpeechToMotion, stream_motion

__all__ = ["AudioWindow", "FaceStream", "MotionStream", "SpeechToMotion", "StreamConfig", "hold_skipped",
           "stream_motion"]
