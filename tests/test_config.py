"""Config presets, file overrides (JSON/TOML), command-line overrides, strict keys."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sdmtalk.config import (
    ExperimentConfig,
    TrainConfig,
    load_config,
    save_config,
)
from sdmtalk.errors import InputError
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.typed_config import parse_override


def _an_int_model_field() -> str:
    """A model field of type int (the test does not depend on SDMConfig's field names)."""
    import typing

    hints = typing.get_type_hints(SDMConfig)
    return next(f.name for f in dataclasses.fields(SDMConfig) if hints[f.name] is int)


def test_presets_are_the_dataclass_defaults():
    base, tiny = load_config("base"), load_config("tiny")
    assert base.train == TrainConfig() and base.model == SDMConfig.base()
    assert tiny.train == TrainConfig.tiny() and tiny.model == SDMConfig.tiny()
    assert tiny.train.steps < base.train.steps
    assert base.train.lr == 2e-4 and base.train.betas == (0.4, 0.999)  # paper 4.1
    assert base.train.device == "auto"


def test_toml_file_overrides_its_preset(tmp_path):
    key = _an_int_model_field()
    path = tmp_path / "exp.toml"
    path.write_text(f'preset = "tiny"\n[train]\nsteps = 77\nlr = 1\nbetas = [0.5, 0.9]\n'
                    f"[model]\n{key} = 3\n")
    cfg = load_config(path)
    assert cfg.train.steps == 77 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == (0.5, 0.9)
    assert getattr(cfg.model, key) == 3
    assert cfg.train.batch_size == TrainConfig.tiny().batch_size  # untouched: tiny's value


def test_json_file_defaults_to_base_and_cli_overrides_win(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"train": {"steps": 5, "seed": 1}}))
    cfg = load_config(path, ["train.seed=9", "train.device=cpu", "train.betas=0.1,0.2"])
    assert cfg.train.steps == 5 and cfg.train.seed == 9 and cfg.train.device == "cpu"
    assert cfg.train.betas == (0.1, 0.2)
    assert cfg.train.batch_size == TrainConfig().batch_size


@pytest.mark.parametrize("text, message", [
    ('[train]\nstepz = 3\n', "unknown config key 'train.stepz'"),
    ('[trian]\nsteps = 3\n', "unknown config key 'trian'"),
    ('[train]\nsteps = "many"\n', "'train.steps' must be int"),
    ('[train]\nsteps = 2.5\n', "'train.steps' must be int"),
    ('[train]\nbetas = [0.1]\n', "'train.betas' needs 2 values"),
    ('[train]\ngrad_clip = true\n', "'train.grad_clip' must be float"),
    ('preset = "huge"\n', "preset must be one of"),
    ('[train\n', "not valid TOML"),
    ('[train]\nlog_every = 0\n', "'train.log_every' must be >= 1"),
    ('[train]\nbetas = [0.4, 1.5]\n', "'train.betas' must lie in"),
    ('[model]\ndelta_ref = "photo"\n', "model config: delta_ref and pose_ref must be"),
    ('[model]\ncontent_norm = "batch"\n', "model config: norm must be"),
    ('[model]\nk_auto_max = 99\n', "model config: k_auto_max must be in"),
])
def test_bad_files_name_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bad_names_and_overrides_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown config key 'train.nope'"):
        load_config("tiny", ["train.nope=1"])
    with pytest.raises(InputError, match="not KEY=VALUE"):
        load_config("tiny", ["train.steps"])
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="unknown config preset"):
        ExperimentConfig.preset("huge")
    with pytest.raises(InputError, match="must end in .json or .toml"):
        (tmp_path / "c.yaml").write_text("a: 1")
        load_config(tmp_path / "c.yaml")


def test_override_values_are_parsed_as_literals():
    assert parse_override("train.steps=100") == {"train": {"steps": 100}}
    assert parse_override("train.lr=3e-4") == {"train": {"lr": 3e-4}}
    assert parse_override("train.device=cuda:1") == {"train": {"device": "cuda:1"}}
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    assert parse_override("a.b=true") == {"a": {"b": True}}


def test_dict_round_trip_and_saved_file_reload(tmp_path):
    cfg = load_config("tiny", ["train.steps=12", "train.betas=0.3,0.8"])
    data = cfg.to_dict()
    assert data["train"]["betas"] == [0.3, 0.8]
    json.dumps(data)  # plain JSON types only
    assert ExperimentConfig.from_dict(data) == cfg
    save_config(cfg, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == cfg
    with pytest.raises(InputError, match="unknown config key 'extra'"):
        ExperimentConfig.from_dict({**data, "extra": 1}, source="ckpt.pt")
