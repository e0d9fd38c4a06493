"""Weights in and out (ground layer): exported safetensors weights with their config, and
reading a training checkpoint's weights.

Exported weights are a safetensors file whose metadata holds the format, the sdmtalk
version and the model config as JSON, plus a sidecar ``.json`` with the same facts for
people and tools that do not read safetensors headers. A training checkpoint
(``ckpt-*.pt``, written by ``sdmtalk.train.checkpoint``) is a ``torch.save`` of tensors and
plain containers, read with ``torch.load(weights_only=True)`` (no pickle of arbitrary objects).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sdmtalk import __version__
from sdmtalk.errors import InputError
from sdmtalk.typed_config import from_dict, to_dict

CHECKPOINT_FORMAT = "sdmtalk-train-checkpoint"
WEIGHTS_FORMAT = "sdmtalk-weights"


def inference_state(ckpt: dict) -> dict:
    """The weights a checkpoint is used with: its moving average if it has one."""
    return ckpt.get("ema") or ckpt["model"]


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a training checkpoint (``weights_only=True``); InputError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found: give the ckpt-last.pt or ckpt-best.pt "
                         "of a training run")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:  # corrupt, truncated
        raise InputError(f"checkpoint {path} cannot be read ({err}); use another checkpoint "
                         "or train again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not an sdmtalk training checkpoint")
    return ckpt


def write_weights(state: dict, model_config: dict, path, sidecar: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) + ``path.json``: tensors of ``state``, the model config
    in the metadata (``load_model`` rebuilds the model from it), ``sidecar`` facts (training
    step, data, val metrics, for the model card) added to the .json."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: exported weights must end in .safetensors")
    # clone: safetensors refuses tensors sharing storage (tied weights); loading re-ties them
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {"format": WEIGHTS_FORMAT, "sdmtalk_version": __version__,
            "model_config": json.dumps(model_config)}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # safetensors creates it owner-only; shipped weights are public
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    facts = {"format": WEIGHTS_FORMAT, "sdmtalk_version": __version__,
             "model_config": model_config, "num_tensors": len(tensors),
             "num_parameters": int(sum(t.numel() for t in tensors.values())), **(sidecar or {})}
    side = path.with_suffix(".json")
    side_tmp = side.with_name(f".{side.name}.tmp")
    side_tmp.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    os.replace(side_tmp, side)
    return path


def write_model_weights(model: torch.nn.Module, path, sidecar: dict | None = None) -> Path:
    """``write_weights`` of a model that carries its config dataclass as ``model.cfg``."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError("write_model_weights needs a model with a .cfg config dataclass")
    return write_weights(model.state_dict(), to_dict(cfg), path, sidecar)


def read_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, model config dict) of exported weights; InputError if not sdmtalk weights."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights {path} not found: export them with `sdmtalk train` "
                         "or give a .safetensors / ckpt-*.pt file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        # load_file maps the file: copy, so that weights written over it later (a retrained
        # ridge copied into place) cannot change a model that is already loaded
        tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as err:
        raise InputError(f"weights {path} cannot be read ({err}); export them again") from None
    if meta.get("format") != WEIGHTS_FORMAT or "model_config" not in meta:
        raise InputError(f"{path} is not an sdmtalk weights file (no sdmtalk metadata)")
    return tensors, json.loads(meta["model_config"])


def read_tagged_weights(path, kind: str, config_cls, label: str, train_command: str):
    """Weights of a non-SDM model whose config carries kind = `kind` (the linear baseline,
    the sync expert) -> (tensors, config_cls instance). InputError, naming the file and how
    to make it, when the file is missing or holds another model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{label} weights not found at {path}: train them with `{train_command}`")
    tensors, cfg_dict = read_weights(path)
    if cfg_dict.get("kind") != kind:
        raise InputError(f"{path} holds no {label} (config kind {cfg_dict.get('kind')!r})")
    return tensors, from_dict(config_cls, cfg_dict, source=str(path))
