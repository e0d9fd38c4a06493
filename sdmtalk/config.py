"""Experiment configuration: typed dataclasses are the one source of defaults.

A config file (JSON or TOML) only overrides the defaults of a preset::

    preset = "tiny"            # optional: which preset the file starts from (default "base")
    [train]
    steps = 2000
    [model]
    ...                        # fields of SDMConfig

Unknown keys and values of the wrong type are errors (``InputError`` naming key and file).
Command-line overrides use dotted keys: ``train.steps=100``, ``train.betas=0.5,0.99``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sdmtalk.errors import InputError
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.typed_config import from_dict, merge_nested, override, parse_override, to_dict

PRESETS = ("tiny", "base")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one training run (defaults: the "base" preset)."""

    steps: int = 5000  # the first model had 3000 and its val loss was still falling
    batch_size: int = 32  # per process; DDP with N processes sees N * batch_size windows a step
    lr: float = 2e-4  # paper 4.1: Adam, lr 2e-4, betas (0.4, 0.999)
    betas: tuple[float, float] = (0.4, 0.999)
    weight_decay: float = 0.0
    # frames per training window: 2 s = two pose-mode segments of SDMConfig.base() (so G_c
    # learns to carry its state across a change of z); measured best on dev at 1000 steps
    window: int = 50
    val_every: int = 250  # steps between validations (0 = never)
    val_batches: int = 16  # batches of the val split per validation
    ckpt_every: int = 250  # steps between ckpt-last.pt writes (also written at the end)
    log_every: int = 50  # steps averaged into one row of metrics.csv
    seed: int = 0
    stats_windows: int = 2000  # train windows sampled for the motion/mel normalisation stats
    num_workers: int = 2
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    device: str = "auto"  # auto = CUDA when available, else CPU
    # which validation keeps ckpt-best.pt: "loss" (lowest val total) or "lip_sync" (highest
    # val lip-gap r of the inference path minus 0.5 |ln amplitude ratio|): the loss kept
    # falling while dev lip sync had peaked, and a model can lower it by mumbling
    select: str = "lip_sync"
    speaker_power: float = 0.25  # train windows pick a speaker by (its frames) ** this: 0 =
    #   every speaker alike, 1 = by time (GRID speaker s1 holds 60 % of the minutes)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off, e.g.
    #   0.999): validation, ckpt-best selection and the exported weights use the average. The
    #   deep head-pose pass of one run swung from 2.8 to 1.6 deg roll between checkpoints
    # speaker augmentation of the train windows' log-mel (data.augment.MelAugment): new
    # voices from the 78 known ones. mel_warp: largest vocal-tract frequency scaling (0 = off,
    # e.g. 0.12); mel_masks: frequency bands and time spans masked per window (0 = off);
    # mel_prefix_mean: share of windows normalised by the mean log-mel a stream has heard by
    # then instead of the whole clip's (model.mel_cmn; 0 = off)
    mel_warp: float = 0.0
    mel_masks: int = 0
    mel_prefix_mean: float = 0.0

    @classmethod
    def tiny(cls) -> TrainConfig:
        """Trains for real on a few clips in seconds on CPU (the backbone of the tests)."""
        # lr 10x the paper's: a 0.1 M-parameter model learns visibly within ~100 steps
        return cls(steps=100, batch_size=4, lr=2e-3, window=32,  # window: 2 tiny segments
                   val_every=25, val_batches=2, ckpt_every=50, log_every=10,
                   stats_windows=200, num_workers=0)

    @classmethod
    def base(cls) -> TrainConfig:
        return cls()

    def check(self, source: str = "config") -> TrainConfig:
        """InputError naming the first value out of range; else self."""
        positive = ("steps", "batch_size", "log_every", "val_batches", "stats_windows")
        limits = {**{k: 1 for k in positive}, "window": 2, "val_every": 0, "ckpt_every": 0,
                  "num_workers": 0, "seed": 0, "mel_masks": 0}
        for key, low in limits.items():
            if getattr(self, key) < low:
                raise InputError(f"{source}: 'train.{key}' must be >= {low}, not {getattr(self, key)}")
        if self.select not in ("loss", "lip_sync"):
            raise InputError(f"{source}: 'train.select' must be 'loss' or 'lip_sync', not {self.select!r}")
        if not 0 <= self.ema < 1:
            raise InputError(f"{source}: 'train.ema' must lie in [0, 1) (0 = off), not {self.ema}")
        if not 0 <= self.mel_warp < 0.5:
            raise InputError(f"{source}: 'train.mel_warp' must lie in [0, 0.5) (0 = off), not {self.mel_warp}")
        if not 0 <= self.mel_prefix_mean <= 1:
            raise InputError(f"{source}: 'train.mel_prefix_mean' must lie in [0, 1], not {self.mel_prefix_mean}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise InputError(f"{source}: train.lr must be > 0, train.weight_decay and "
                             "train.grad_clip >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise InputError(f"{source}: 'train.betas' must lie in [0, 1), not {list(self.betas)}")
        return self


@dataclass
class ExperimentConfig:
    """Everything a training run needs besides the data: the model and the optimisation."""

    model: SDMConfig = field(default_factory=SDMConfig.base)
    train: TrainConfig = field(default_factory=TrainConfig.base)

    @classmethod
    def preset(cls, name: str) -> ExperimentConfig:
        if name not in PRESETS:
            raise InputError(f"unknown config preset '{name}': use one of {', '.join(PRESETS)} "
                             "or a .json/.toml file")
        return cls(model=getattr(SDMConfig, name)(), train=getattr(TrainConfig, name)())

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> ExperimentConfig:
        return from_dict(cls, data, source)


def read_config_file(path: Path) -> dict:
    """The raw nested dict of a .json or .toml config file."""
    if not path.is_file():
        raise InputError(f"config file {path} not found: give a preset ({', '.join(PRESETS)}) "
                         "or an existing .json/.toml file")
    if path.suffix not in (".json", ".toml"):
        raise InputError(f"config file {path} must end in .json or .toml")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err}); fix the file") from None
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:
        raise InputError(f"{path}: TOML configs need Python 3.11 or newer; write it as JSON") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err}); fix the file") from None


def load_config(name_or_path: str | Path = "base", overrides: list[str] | None = None
                ) -> ExperimentConfig:
    """A preset name ("tiny", "base") or a .json/.toml file, then ``overrides``
    ("train.steps=100"). Unknown keys or wrong types raise InputError."""
    name = str(name_or_path)
    if name in PRESETS:
        config, data, source = ExperimentConfig.preset(name), {}, f"preset {name}"
    else:
        path = Path(name)
        data, source = read_config_file(path), str(path)
        preset = data.pop("preset", "base")
        if preset not in PRESETS:
            raise InputError(f"{path}: preset must be one of {', '.join(PRESETS)}, not {preset!r}")
        config = ExperimentConfig.preset(preset)
    config = override(config, data, source)
    config.train.check(source)
    check_model_config(config.model, source)
    extra: dict = {}
    for text in overrides or []:
        extra = merge_nested(extra, parse_override(text))
    config = override(config, extra, "command-line override")
    config.train.check("command-line override")
    check_model_config(config.model, "command-line override")
    return config


def check_model_config(model: SDMConfig, source: str) -> None:
    """InputError for a model config the model refuses (its constructor holds the checks:
    sizes, choices such as content_norm or delta_ref, k ranges), before any data is read."""
    try:
        build_model(model)
    except ValueError as err:
        raise InputError(f"{source}: model config: {err}") from None


def save_config(config: ExperimentConfig, path: Path) -> None:
    """Write the full resolved config as JSON (a file load_config reads back unchanged)."""
    Path(path).write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
