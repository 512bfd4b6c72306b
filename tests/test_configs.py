"""Every YAML in conf/ composes against its structured config, and what it describes builds."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from asr.config import register_configs

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARIES = sorted(p.stem for p in CONF.glob("*.yaml"))
# Fields each primary leaves MISSING on purpose: the user must give them on the command line.
REQUIRED = {"train": {"trainer.exp_dir": "exp/test"}, "decode": {}}
GROUP_OPTIONS = sorted(
    (d.name, p.stem) for d in CONF.iterdir() if d.is_dir() for p in d.glob("*.yaml")
)


def _groups_of(primary: str) -> set[str]:
    defaults = OmegaConf.load(CONF / f"{primary}.yaml").get("defaults", [])
    return {next(iter(d)) for d in defaults if OmegaConf.is_dict(d) or isinstance(d, dict)}


def _compose(primary: str, overrides: list[str], fill_required: bool = True):
    register_configs()
    required = [f"{k}={v}" for k, v in REQUIRED.get(primary, {}).items()] if fill_required else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=primary, overrides=overrides + required)


def test_conf_has_primaries_and_groups():
    assert {"train", "decode"} <= set(PRIMARIES)
    groups = {g for g, _ in GROUP_OPTIONS}
    assert {"model", "data", "loss", "optim", "trainer", "decode"} <= groups


@pytest.mark.parametrize("primary", PRIMARIES)
def test_primary_composes(primary):
    assert primary in REQUIRED, f"conf/{primary}.yaml: list its mandatory fields in REQUIRED"
    bare = _compose(primary, [], fill_required=False)
    assert set(OmegaConf.missing_keys(bare)) == set(REQUIRED[primary])
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


def test_typo_in_a_yaml_is_rejected(tmp_path):
    """A misspelt key in a group YAML must fail composition, not be silently ignored."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    yaml = conf / "model" / "conformer_small.yaml"
    text = yaml.read_text()
    assert "\nencoder:\n" in text
    yaml.write_text(text.replace("\nencoder:\n", "\nencoder:\n  d_modle: 3\n", 1))
    register_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(Exception, match="d_modle"):
            compose(config_name="train", overrides=["model=conformer_small", "trainer.exp_dir=x"])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(Exception, match="d_modle"):
            compose(config_name="train", overrides=["model.encoder.d_modle=3", "trainer.exp_dir=x"])
