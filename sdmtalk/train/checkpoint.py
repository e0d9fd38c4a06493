"""Training checkpoints (resume) and exported weights (inference).

A training checkpoint (``ckpt-last.pt``, ``ckpt-best.pt``) is a ``torch.save`` of tensors
and plain containers only, so it loads with ``torch.load(weights_only=True)`` (no pickle
of arbitrary objects)::

    {"format": "sdmtalk-train-checkpoint", "sdmtalk_version": str, "step": int,
     "config": dict (ExperimentConfig.to_dict()), "model": state_dict,
     "optimizer": state_dict, "rng": [per-process RNG states], "trainer": dict}

Exported weights are a safetensors file whose metadata holds the format, the sdmtalk
version and the model config as JSON, plus a sidecar ``.json`` with the same facts for
people and tools that do not read safetensors headers.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from sdmtalk import __version__
from sdmtalk.errors import InputError

CHECKPOINT_FORMAT = "sdmtalk-train-checkpoint"
WEIGHTS_FORMAT = "sdmtalk-weights"


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


def _model_config_of(source) -> tuple[dict, dict, dict]:
    """(state_dict, model config dict, extra metadata) of a checkpoint path/dict or a model."""
    if isinstance(source, (str, Path)):
        source = load_checkpoint(source)
    if isinstance(source, dict):
        extra = {"step": source["step"], "train_config": source["config"].get("train", {})}
        best = source.get("trainer", {}).get("best_val_loss")
        if best is not None:
            extra["best_val_loss"] = best
        return inference_state(source), source["config"]["model"], extra
    if isinstance(source, torch.nn.Module):
        from sdmtalk.config import to_dict

        cfg = getattr(source, "cfg", None)
        if cfg is None:
            raise TypeError("export_weights needs a model with a .cfg config dataclass")
        return source.state_dict(), to_dict(cfg), {}
    raise TypeError(f"export_weights takes a checkpoint path/dict or a model, not {type(source)}")


def export_weights(source, path, notes: dict | None = None) -> Path:
    """Write ``path`` (.safetensors) + ``path.json`` from a checkpoint (path or dict) or a model.

    The safetensors metadata holds ``format``, ``sdmtalk_version`` and ``model_config``
    (JSON); ``load_model`` rebuilds the model from it. ``notes`` (training facts: data,
    steps, val metrics, for the model card) are added to the sidecar.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"{path}: exported weights must end in .safetensors")
    state, model_config, extra = _model_config_of(source)
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
    sidecar = {"format": WEIGHTS_FORMAT, "sdmtalk_version": __version__,
               "model_config": model_config, "num_tensors": len(tensors),
               "num_parameters": int(sum(t.numel() for t in tensors.values())), **extra, **(notes or {})}
    side = path.with_suffix(".json")
    side_tmp = side.with_name(f".{side.name}.tmp")
    side_tmp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    os.replace(side_tmp, side)
    return path


def read_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, model config dict) of exported weights; InputError if not sdmtalk weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

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


def load_model(path, device="cpu") -> torch.nn.Module:
    """Rebuild the model from the config stored with its weights (a .safetensors export or a
    training checkpoint .pt), load the weights strictly, and return it in eval mode."""
    from sdmtalk.config import from_dict
    from sdmtalk.motion.sdm import SDMConfig, build_model

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


def read_tagged_weights(path, kind: str, config_cls, label: str, train_command: str):
    """Weights of a non-SDM model whose config carries kind = `kind` (the linear baseline,
    the sync expert) -> (tensors, config_cls instance). InputError, naming the file and how
    to make it, when the file is missing or holds another model."""
    from sdmtalk.config import from_dict

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{label} weights not found at {path}: train them with `{train_command}`")
    tensors, cfg_dict = read_weights(path)
    if cfg_dict.get("kind") != kind:
        raise InputError(f"{path} holds no {label} (config kind {cfg_dict.get('kind')!r})")
    return tensors, from_dict(config_cls, cfg_dict, source=str(path))
