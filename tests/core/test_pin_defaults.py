"""Pins every default constant of the two Anthropic recipes (seeds 004 and 000), key by key."""

import pytest

from sae_core.config import RunConfig
from sae_core.recipes import get_recipe

from . import pin_reference as ref


@pytest.mark.parametrize("name,arch,expected", [
    ("anthropic-2024-04", "relu", ref.RELU_DEFAULTS),
    ("anthropic-2025-02", "jumprelu", ref.JUMPRELU_DEFAULTS),
])
def test_recipe_defaults_are_the_seeds(name, arch, expected):
    recipe = get_recipe(name)
    assert recipe.arch == arch
    assert set(recipe.defaults) == set(expected)
    for key, value in expected.items():
        got = recipe.defaults[key]
        assert type(got) is type(value) and got == value, (key, got, value)
    resolved = RunConfig(name, m=8, steps=10).resolve()
    assert dict(resolved.hp) == expected


def test_only_jumprelu_trains_transcoders():
    assert get_recipe("anthropic-2025-02").supports_transcoder
    assert not get_recipe("anthropic-2024-04").supports_transcoder
