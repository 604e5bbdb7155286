"""Recipe registry: ``recipe.name`` in config → recipe class; the other keys are its constructor arguments."""

from __future__ import annotations

from typing import Any

from generation.recipes.base import Recipe, Sample
from generation.recipes.self_instruct import SelfInstruct
from generation.recipes.template import Template

RECIPES: dict[str, type] = {cls.name: cls for cls in (SelfInstruct, Template)}


def build_recipe(config: dict[str, Any]) -> Recipe:
    params = dict(config)
    name = params.pop("name", None)
    params.pop("builtin_seeds", None)  # read by source=builtin, not by the recipe
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid choices: {sorted(RECIPES)}")
    try:
        return RECIPES[name](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for recipe {name!r}: {exc}") from exc


__all__ = ["RECIPES", "Recipe", "Sample", "build_recipe"]
