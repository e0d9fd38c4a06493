"""Rebuild the SDM from the config stored with its weights (an export or a training checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch

from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.typed_config import from_dict
from sdmtalk.weights.io import inference_state, load_checkpoint, read_weights


def load_model(path, device="cpu") -> torch.nn.Module:
    """Rebuild the model from the config stored with its weights (a .safetensors export or a
    training checkpoint .pt), load the weights strictly, and return it in eval mode."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state, model_config = read_weights(path)
    else:
        ckpt = load_checkpoint(path, map_location="cpu")
        state, model_config = inference_state(ckpt), ckpt["config"]["model"]
    cfg = from_dict(SDMConfig, model_config, source=str(path))
    model = build_model(cfg, None)
    model.load_state_dict(state)
    return model.to(device).eval()
