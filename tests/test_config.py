"""Config overrides: typed parsing, dotted keys, clear errors, JSON round trip."""

import dataclasses

import pytest

from gensynth import config as config_lib
from gensynth.recipes.image_diffusion import ImageDiffusionConfig


def test_overrides_parse_by_type():
    cfg = config_lib.apply_overrides(
        ImageDiffusionConfig(),
        ["model.channels=48", "model.channel_mult=1,2,4", "train.learning_rate=3e-4", "data.augment=false"],
    )
    assert cfg.model.channels == 48
    assert cfg.model.channel_mult == (1, 2, 4)
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.data.augment is False
    assert ImageDiffusionConfig().model.channels != 48  # the default is untouched (frozen)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.chanels=4", "'model.chanels'"),
        ("model.channels=four", "'model.channels'"),
        ("data.augment=maybe", "'data.augment'"),
        ("model=3", "'model'"),
        ("train.num_steps", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        config_lib.apply_overrides(ImageDiffusionConfig(), [override])


def test_dict_round_trip():
    cfg = config_lib.apply_overrides(ImageDiffusionConfig(), ["model.attention_levels=1,2", "train.seed=7"])
    back = config_lib.from_dict(ImageDiffusionConfig, config_lib.to_dict(cfg))
    assert back == cfg
    assert dataclasses.is_dataclass(back.model) and back.model.attention_levels == (1, 2)
