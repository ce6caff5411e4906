"""Every registered recipe is classified for SAELens, and its export names that architecture (no SAELens needed)."""

from __future__ import annotations

import pytest

from sae_core.arch import ARCHS
from sae_core.recipes import get_recipe, recipe_names
from tests.interop.classification import ABSENT, SAELENS_ARCH


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_is_classified(recipe):
    assert recipe in SAELENS_ARCH, f"classify {recipe} in tests/interop/classification.py"
    expected = SAELENS_ARCH[recipe]
    if expected.startswith(ABSENT):
        assert expected.partition(":")[2].strip(), f"{recipe}: say why SAELens has no architecture for it"
    else:
        assert ARCHS[get_recipe(recipe).arch].saelens_architecture == expected
