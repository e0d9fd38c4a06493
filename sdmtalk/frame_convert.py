"""Decoded video frames -> upright RGB or grey arrays, and RGB -> the encoder's yuv420p.

`to_rgb` / `to_gray` convert one frame the way PyAV does (swscale), turned by the stream's
display rotation. `PooledFrames` does the same into reused arrays for a reader of a long video
(frame_source): a fresh frame-sized array and a fresh swscale context (with its own threads)
for every frame are what fragmented the dub's heaps (memory.py). `rgb_to_i420` is the way back,
for the encoder (video.write_mp4).
"""

from __future__ import annotations

import functools

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from sdmtalk.memory import BufferPool


def to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    width, height = frame.width, frame.height
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    image = frame.reformat(width, height, format="rgb24", interpolation="AREA").to_ndarray()
    return _upright(image, frame)


def to_gray(frame: av.VideoFrame) -> np.ndarray:
    return _upright(frame.to_ndarray(format="gray"), frame)


def _upright(image: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """The decoded image turned as the file's display rotation says."""
    turns = _turns(frame)
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def _turns(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise (np.rot90's k) that show the frame upright."""
    return round(frame.rotation / 90) % 4 if frame.rotation else 0


_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}  # by _turns
_LUMA_FIRST = {"yuv420p", "yuvj420p"}  # 8-bit luma in plane 0 (the checked ones)
# AVColorSpace unspecified, BT470BG, SMPTE170M: swscale converts all three as BT.601, and only
# then is its grey a function of the luma alone (for BT.709 it is the luminance of the RGB)
_BT601 = {2, 5, 6}
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
# full-range (JPEG) luma / chroma levels -> BT.601 limited range ("TV": 16-235, 16-240)
_LIMITED_LUMA = np.round(16 + np.arange(256) * 219 / 255).astype(np.uint8)
_LIMITED_CHROMA = np.round(128 + (np.arange(256) - 128) * 224 / 255).astype(np.uint8)
I420_TAGS = (6, 1)  # what rgb_to_i420 makes, as the encoder tags it: AVColorSpace SMPTE170M, AVColorRange MPEG


def rgb_to_i420(rgb: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8, H and W even -> yuv420p planes stacked in dst (H * 3 / 2, W):
    BT.601 limited range, each chroma sample the mean of its 2x2 block. What swscale gives the
    encoder by default, in a third of its time (1.7 ms against 5.5 ms a 720p frame, one thread)
    and more exact: against the BT.601 formula the luma is within 1 level (mean 0.39, swscale
    0.36) and the chroma of a detailed colour image within 1.1 (mean 0.35, swscale 5.9: it
    does not average the block). OpenCV's own RGB -> I420 takes each block's chroma from one
    pixel, so luma and chroma are made here from OpenCV's full-range conversions."""
    h, w = rgb.shape[:2]
    luma, u, v = _i420_planes(dst)
    cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=luma)  # 0.299 R + 0.587 G + 0.114 B
    cv2.LUT(luma, _LIMITED_LUMA, dst=luma)
    block = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)  # 2x2 means
    ycrcb = cv2.cvtColor(block, cv2.COLOR_RGB2YCrCb)
    cv2.LUT(ycrcb, _LIMITED_CHROMA, dst=ycrcb)
    u[:], v[:] = ycrcb[..., 2], ycrcb[..., 1]  # U = Cb, V = Cr
    return dst


def _i420_planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H, W), U and V (H / 2, W / 2) planes stacked in an (H * 3 / 2, W) array,
    as OpenCV's and PyAV's I420 have them."""
    w = i420.shape[1]
    h = i420.shape[0] * 2 // 3
    flat, y_size, c_size = i420.reshape(-1), h * w, (h // 2) * (w // 2)
    return (i420[:h], flat[y_size : y_size + c_size].reshape(h // 2, w // 2),
            flat[y_size + c_size :].reshape(h // 2, w // 2))


class PooledFrames:
    """Decoded frames -> upright RGB (H, W, 3) or grey (H, W) uint8 written into reused arrays
    (memory.BufferPool), for a reader of a long video (frame_source): decoding allocates no
    frame-sized memory. One thread converts; the arrays may be held elsewhere (queues) for up
    to `size` frames before new ones are allocated.

    Grey is PyAV's own (to_ndarray(format="gray")) bit for bit: for BT.601 frames swscale's grey
    is a range expansion of the luma plane alone, read into a table once per kind of frame. RGB
    of a 4:2:0 limited-range BT.601 frame (what H.264 files without colour tags are) comes from
    OpenCV and differs from PyAV's swscale by 1-2 levels on most pixels (mean 1.1, max 13 on 720p
    video). OpenCV's is the more exact (mean error against the BT.601 formula 0.3, swscale's 0.9
    and biased): encoded again by write_mp4 the video's own luma comes back within 0.004 on
    average, against 0.6 when swscale decoded it. Other frames (BT.709, full range, 10 bit, odd
    sizes) are converted by swscale exactly as to_rgb does, then copied in.
    """

    def __init__(self, size: int = 16):
        self._rgb, self._gray = BufferPool(size), BufferPool(size)  # handed to the caller
        self._unturned = BufferPool(1)  # scratch within one call: before the display rotation
        self._i420 = BufferPool(1)  # scratch within one call: the planes side by side, for OpenCV
        self._swscale = VideoReformatter()  # one for all frames (a frame's own starts threads every time)

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        convert = self._rgb_opencv if _opencv_colours(frame) else self._rgb_swscale
        return self._upright(frame, (frame.height, frame.width, 3), convert, self._rgb)

    def gray(self, frame: av.VideoFrame) -> np.ndarray:
        convert = self._gray_table if _grey_is_luma(frame) else self._gray_swscale
        return self._upright(frame, (frame.height, frame.width), convert, self._gray)

    def _upright(self, frame: av.VideoFrame, shape: tuple, convert, out: BufferPool) -> np.ndarray:
        """convert(frame, dst) writes the stored image into dst; then the display rotation."""
        turns = _turns(frame)
        if not turns:
            return convert(frame, out.take(shape))
        image = convert(frame, self._unturned.take(shape))
        shown = (shape[1], shape[0], *shape[2:]) if turns % 2 else shape
        return cv2.rotate(image, _ROTATE[turns], dst=out.take(shown))

    def _rgb_opencv(self, frame: av.VideoFrame, dst: np.ndarray) -> np.ndarray:
        h, w = frame.height, frame.width
        i420 = self._i420.take((h * 3 // 2, w))
        for index, plane in enumerate(_i420_planes(i420)):
            plane[:] = _plane(frame, index)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420, dst=dst)

    def _rgb_swscale(self, frame: av.VideoFrame, dst: np.ndarray) -> np.ndarray:
        np.copyto(dst, self._swscale.reformat(frame, format="rgb24", interpolation="AREA", threads=1).to_ndarray())
        return dst

    def _gray_table(self, frame: av.VideoFrame, dst: np.ndarray) -> np.ndarray:
        table = _luma_table(frame.format.name, frame.color_range, frame.colorspace)
        return cv2.LUT(_plane(frame, 0), table, dst=dst)

    def _gray_swscale(self, frame: av.VideoFrame, dst: np.ndarray) -> np.ndarray:
        np.copyto(dst, self._swscale.reformat(frame, format="gray", threads=1).to_ndarray())
        return dst


def _opencv_colours(frame: av.VideoFrame) -> bool:
    """OpenCV's I420 -> RGB uses the matrix and range swscale would use for this frame."""
    return (frame.format.name == "yuv420p" and frame.color_range != _FULL_RANGE and frame.colorspace in _BT601
            and frame.width % 2 == 0 and frame.height % 2 == 0 and _top_down(frame))


def _grey_is_luma(frame: av.VideoFrame) -> bool:
    """swscale's grey of this frame is a function of its luma plane alone."""
    return frame.format.name in _LUMA_FIRST and frame.colorspace in _BT601 and _top_down(frame)


def _top_down(frame: av.VideoFrame) -> bool:
    return all(plane.line_size > 0 for plane in frame.planes)


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """Plane `index` as (rows, width) uint8 without its line padding: a view, no copy."""
    plane = frame.planes[index]
    return np.ndarray((plane.height, plane.width), np.uint8, buffer=plane, strides=(plane.line_size, 1))


@functools.cache
def _luma_table(pix_fmt: str, color_range: int, colorspace: int) -> np.ndarray:
    """(256,) uint8: the grey swscale makes of each luma value in frames of this kind."""
    probe = av.VideoFrame(16, 16, pix_fmt)
    probe.color_range, probe.colorspace = color_range, colorspace
    for index in range(len(probe.planes)):
        _plane(probe, index)[:] = 128
    _plane(probe, 0)[:] = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.ascontiguousarray(probe.to_ndarray(format="gray").reshape(-1))
