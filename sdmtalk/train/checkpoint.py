"""Training checkpoints (resume) and the export of a run's weights (for inference).

A training checkpoint (``ckpt-last.pt``, ``ckpt-best.pt``) is a ``torch.save`` of tensors
and plain containers only, so it loads with ``torch.load(weights_only=True)`` (no pickle
of arbitrary objects)::

    {"format": "sdmtalk-train-checkpoint", "sdmtalk_version": str, "step": int,
     "config": dict (ExperimentConfig.to_dict()), "model": state_dict,
     "optimizer": state_dict, "rng": [per-process RNG states], "trainer": dict}

Reading checkpoints and the exported weights' format live in ``sdmtalk.weights.io``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from sdmtalk import __version__
from sdmtalk.weights.io import (
    CHECKPOINT_FORMAT,
    inference_state,
    load_checkpoint,
    write_model_weights,
    write_weights,
)


def atomic_torch_save(obj, path: Path) -> None:
    """Write ``obj`` to a temp file beside ``path``, then rename: a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def capture_rng_state() -> dict:
    """This process's RNG states (torch CPU and CUDA, numpy, python) as tensors and ints."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state``: the same random numbers follow as before the save."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:  # another GPU count: restore the devices both runs have
            for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s, i)


def save_checkpoint(path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, config: dict, rng: list[dict], trainer: dict | None = None,
                    ema: dict | None = None) -> None:
    """Write a training checkpoint atomically. ``rng`` holds one state per DDP rank; ``ema``:
    the moving average of the weights (train.ema), which exports and load_model prefer."""
    atomic_torch_save({
        "format": CHECKPOINT_FORMAT,
        "sdmtalk_version": __version__,
        "step": int(step),
        "config": config,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "trainer": trainer or {},
        **({"ema": {k: v.detach().cpu() for k, v in ema.items()}} if ema else {}),
    }, path)


def export_weights(source, path, notes: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) + ``path.json`` from a checkpoint (path or dict) or a model.

    The safetensors metadata holds ``format``, ``sdmtalk_version`` and ``model_config``
    (JSON); ``load_model`` rebuilds the model from it. ``notes`` (training facts: data,
    steps, val metrics, for the model card) are added to the sidecar.
    """
    if isinstance(source, torch.nn.Module):
        return write_model_weights(source, path, notes)
    if isinstance(source, (str, Path)):
        source = load_checkpoint(source)
    if not isinstance(source, dict):
        raise TypeError(f"export_weights takes a checkpoint path/dict or a model, not {type(source)}")
    facts = {"step": source["step"], "train_config": source["config"].get("train", {})}
    best = source.get("trainer", {}).get("best_val_loss")
    if best is not None:
        facts["best_val_loss"] = best
    return write_weights(inference_state(source), source["config"]["model"], path,
                         {**facts, **(notes or {})})
