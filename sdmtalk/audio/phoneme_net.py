"""hama's phoneme recogniser run by torch: the same weights, under a tenth of the CPU time.

NOTICE: a reimplementation of the forward pass of the waveform phoneme recogniser in hama
1.7.0 (https://github.com/hamanlp/hama, Apache-2.0, (c) the hama authors). The weights are
read, unchanged, from the `asr_waveform.hama` file inside hama's wheel; hama's own engine
(`hama_log_probs`) stays the reference that tests/test_phoneme_runtime.py compares against.

The network: reflect-pad(200) -> STFT (periodic Hann, n_fft 400, hop 160) -> power -> 80 mel
-> log(max(., 1e-10)) rounded to float16 -> conv(80->144, k3, stride 2) + GELU -> 4 conformer
blocks (half-step SiLU feed-forward, 4-head self-attention, GLU / depthwise k31 (batch norm
folded in) / SiLU convolution module, half-step feed-forward, layer norm) -> linear(144->191)
-> log-softmax: 20 ms frames of CTC log-probabilities over 191 tokens (blank included).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from importlib import resources

import numpy as np

from sdmtalk.errors import InputError

N_FFT, HOP, PAD, N_FREQ = 400, 160, 200, 201  # the STFT of hama's front-end (16 kHz)
MAX_STFT_FRAMES = 3000  # hama hears at most 30 s at once (the chunks here are 22 s at most)
D_MODEL, HEADS, BLOCKS = 144, 4, 4
LN_EPS = 1e-5
_DTYPES = {0: np.float32, 1: np.float16}
_MISSING = "the phoneme front-end needs hama's weights: pip install hama==1.7.0"


def read_hama_package(data: bytes) -> dict[str, np.ndarray]:
    """A `.hama` weight file (magic "HAMAPK", a u32 count, then per tensor: u16 name length,
    name, u8 dtype (0 f32, 1 f16), u8 rank, u32 dims, u64 offset, u64 bytes; the data
    follows, 16-byte aligned) -> {name: float32 array}."""
    if data[:6] != b"HAMAPK":
        raise InputError("not a hama weight file (no HAMAPK header)")
    count, pos, entries = struct.unpack_from("<I", data, 8)[0], 12, []
    for _ in range(count):
        (size,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2:pos + 2 + size].decode()
        dtype, rank = data[pos + 2 + size], data[pos + 3 + size]
        pos += 4 + size
        dims = struct.unpack_from(f"<{rank}I", data, pos)
        offset, nbytes = struct.unpack_from("<QQ", data, pos + 4 * rank)
        pos += 4 * rank + 16
        entries.append((name, _DTYPES[dtype], dims, offset, nbytes))
    base = -(-pos // 16) * 16
    return {name: np.frombuffer(data, dtype, nbytes // np.dtype(dtype).itemsize, base + offset)
            .reshape(dims).astype(np.float32) for name, dtype, dims, offset, nbytes in entries}


def hama_weight_bytes() -> bytes:
    try:
        return resources.files("hama.assets").joinpath("asr_waveform.hama").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise InputError(_MISSING) from None


def num_output_frames(samples: int) -> int:
    """20 ms frames hama gives for `samples` 16 kHz samples (its hama_asr_num_frames)."""
    return (min(samples // HOP + 1, MAX_STFT_FRAMES) - 1) // 2 + 1


@lru_cache(maxsize=1)  # one network per process: inference only, so threads can share it
def phoneme_net() -> PhonemeNet:
    return PhonemeNet(read_hama_package(hama_weight_bytes()))


class PhonemeNet:
    """hama 1.7.0's waveform recogniser as torch CPU ops (float32, no gradients)."""

    def __init__(self, weights: dict[str, np.ndarray]):
        try:
            self._load(weights)
        except KeyError as err:
            raise InputError(f"hama's weight file lacks {err}: {_MISSING}") from None

    def _load(self, w: dict[str, np.ndarray]) -> None:
        import torch

        def t(name: str):
            return torch.from_numpy(np.ascontiguousarray(w[name]))

        # hama's own DFT kernels (Hann-windowed cos | -sin) as one (400, 402) matrix: an FFT
        # is cheaper (by ~6 % of the whole) but rounds differently, which the float16 log-mel
        # turns into posterior differences of ~1e-2 instead of ~1e-3 from hama's engine
        self.dft = torch.cat([t("stft_real_kernel")[:, 0], t("stft_imag_kernel")[:, 0]]).T.contiguous()
        self.mel_fb = t("mel_fb")
        self.stem = (t("onnx::Conv_801"), t("onnx::Conv_802"))
        self.blocks = [self._block(i, t) for i in range(BLOCKS)]
        self.proj = (t("acoustic_model.model.proj.weight")[:, :, 0].T.contiguous(),
                     t("acoustic_model.model.proj.bias"))

    @staticmethod
    def _block(i: int, t) -> dict:
        """Block i's tensors; linear weights as (in, out) matrices (onnx::MatMul_* already are:
        9 per block from 829 in the order ffn1 fc1, fc2, attention in, -, -, -, out, ffn2)."""
        p, m = f"acoustic_model.model.blocks.{i}.", 829 + 9 * i
        blk = {k: t(p + k) for k in (
            "ffn1.norm.weight", "ffn1.norm.bias", "ffn1.fc1.bias", "ffn1.fc2.bias",
            "attn_norm.weight", "attn_norm.bias", "attn.in_proj_bias", "attn.out_proj.bias",
            "conv.norm.weight", "conv.norm.bias", "conv.pointwise1.bias", "conv.pointwise2.bias",
            "ffn2.norm.weight", "ffn2.norm.bias", "ffn2.fc1.bias", "ffn2.fc2.bias",
            "norm.weight", "norm.bias")}
        for name, j in (("ffn1.fc1", 0), ("ffn1.fc2", 1), ("attn.in_proj", 2), ("attn.out_proj", 6),
                        ("ffn2.fc1", 7), ("ffn2.fc2", 8)):
            blk[name + ".weight"] = t(f"onnx::MatMul_{m + j}")
        for name in ("conv.pointwise1", "conv.pointwise2"):
            blk[name + ".weight"] = t(p + name + ".weight")[:, :, 0].T.contiguous()
        blk["conv.depthwise.weight"] = t(f"onnx::Conv_{804 + 3 * i}")[:, 0].T.contiguous()  # (K, C)
        blk["conv.depthwise.bias"] = t(f"onnx::Conv_{805 + 3 * i}")
        return blk

    def log_probs(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz -> (num_output_frames(N), 191) float32 CTC log-probabilities."""
        import torch

        with torch.inference_mode():
            h = self._front(torch.from_numpy(np.array(wav, np.float32)))  # a copy: may be read-only
            for blk in self.blocks:
                h = _conformer_block(h, blk)
            w, b = self.proj
            return torch.log_softmax(torch.addmm(b, h, w), -1).numpy()

    def _front(self, wav):
        """Samples -> (T, 144): log-mel, then the stride-2 stem conv + GELU."""
        import torch

        fn = torch.nn.functional
        if len(wav) <= PAD:  # too short to reflect; hama reads past its buffer there
            wav = fn.pad(wav, (0, PAD + 1 - len(wav)))
        x = fn.pad(wav[None, None], (PAD, PAD), mode="reflect")[0, 0]
        spec = x.unfold(0, N_FFT, HOP)[:MAX_STFT_FRAMES] @ self.dft
        power = spec[:, :N_FREQ].square() + spec[:, N_FREQ:].square()
        mel = torch.log(torch.clamp(power @ self.mel_fb, min=1e-10)).half().float()
        h = fn.conv1d(mel.T[None], *self.stem, stride=2, padding=1)
        return fn.gelu(h[0].T)


def _conformer_block(h, blk: dict):
    """One conformer block on (T, 144): x + ffn/2, + attention, + conv module, + ffn/2, norm."""
    import torch

    fn = torch.nn.functional
    h = h + 0.5 * _feed_forward(h, blk, "ffn1")
    y = fn.layer_norm(h, (D_MODEL,), blk["attn_norm.weight"], blk["attn_norm.bias"], LN_EPS)
    q, k, v = (z.view(1, len(h), HEADS, -1).transpose(1, 2) for z in torch.addmm(
        blk["attn.in_proj_bias"], y, blk["attn.in_proj.weight"]).split(D_MODEL, -1))
    # 4-d inputs take torch's fused (flash) CPU kernel: about 2x faster than 3-d inputs,
    # which take the unfused path with its mask handling
    a = fn.scaled_dot_product_attention(q, k, v)[0].transpose(0, 1).reshape(len(h), D_MODEL)
    h = torch.addmm(blk["attn.out_proj.bias"], a, blk["attn.out_proj.weight"]).add_(h)
    y = fn.layer_norm(h, (D_MODEL,), blk["conv.norm.weight"], blk["conv.norm.bias"], LN_EPS)
    y = fn.glu(torch.addmm(blk["conv.pointwise1.bias"], y, blk["conv.pointwise1.weight"]), -1)
    y = fn.silu(_depthwise(y, blk["conv.depthwise.weight"], blk["conv.depthwise.bias"]))
    h = torch.addmm(blk["conv.pointwise2.bias"], y, blk["conv.pointwise2.weight"]).add_(h)
    h = h + 0.5 * _feed_forward(h, blk, "ffn2")
    return fn.layer_norm(h, (D_MODEL,), blk["norm.weight"], blk["norm.bias"], LN_EPS)


def _depthwise(y, taps, bias):
    """Depthwise conv (same padding) of time-major (T, C) by taps (K, C): one multiply-add
    per tap is about 6x faster than torch's grouped conv1d on one thread."""
    import torch

    pad = len(taps) // 2
    padded = torch.nn.functional.pad(y, (0, 0, pad, pad))
    out = bias.expand_as(y).clone()
    for j, tap in enumerate(taps):
        out.addcmul_(padded[j:j + len(y)], tap)
    return out


def _feed_forward(h, blk: dict, name: str):
    import torch

    fn = torch.nn.functional
    y = fn.layer_norm(h, (D_MODEL,), blk[name + ".norm.weight"], blk[name + ".norm.bias"], LN_EPS)
    y = fn.silu(torch.addmm(blk[name + ".fc1.bias"], y, blk[name + ".fc1.weight"]))
    return torch.addmm(blk[name + ".fc2.bias"], y, blk[name + ".fc2.weight"])


def hama_log_probs(wav: np.ndarray) -> np.ndarray:
    """The reference: hama's own engine on (N,) float32 16 kHz -> (F, 191) log-probabilities."""
    model = _hama_engine()
    feeds = {model._waveform_input_name: np.asarray(wav, np.float32)[None],
             model._waveform_lengths_input_name: np.array([len(wav)], np.int64)}
    log_probs, _ = model.session.run([model._log_probs_output_name, model._out_lengths_output_name], feeds)
    return log_probs[0]


@lru_cache(maxsize=1)
def _hama_engine():
    try:
        import hama
    except ImportError:
        raise InputError(_MISSING) from None
    return hama.ASRModel()
