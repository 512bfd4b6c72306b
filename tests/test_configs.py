"""Every YAML in conf/ composes against its structured config, and what it describes builds."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from asr.config import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARIES = sorted(p.stem for p in CONF.glob("*.yaml"))
GROUP_OPTIONS = sorted(
    (d.name, p.stem) for d in CONF.iterdir() if d.is_dir() for p in d.glob("*.yaml")
)


def _groups_of(primary: str) -> set[str]:
    defaults = OmegaConf.load(CONF / f"{primary}.yaml").get("defaults", [])
    return {next(iter(d)) for d in defaults if OmegaConf.is_dict(d) or isinstance(d, dict)}


def _compose(primary: str, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=primary, overrides=overrides)


def test_conf_has_primaries_and_groups():
    assert {"train", "decode"} <= set(PRIMARIES)
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"model", "data", "loss", "optim", "trainer", "decode"} <= groups


@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_composes(primary):
    cfg = _compose(primary, [])
    # to_object validates every field against the dataclasses and fails on MISSING values left unset
    OmegaConf.to_object(cfg)


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}/{o}" for g, o in GROUP_OPTIONS])
def test_group_option_composes_and_builds(group, option):
    owners = [p for p in PRIMARIES if group in _groups_of(p)]
    assert owners, f"conf/{group}/{option}.yaml is not selectable from any primary config in conf/"
    cfg = _compose(owners[0], [f"{group}={option}"])
    obj = OmegaConf.to_object(cfg)
    if group == "model":
        from asr.models import build_model

        model = build_model(obj.model)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_unknown_key_is_rejected():
    """A typo in a YAML must fail composition, not be silently ignored."""
    with pytest.raises(Exception):
        _compose("train", ["+model.encoder.d_modle=3"])
