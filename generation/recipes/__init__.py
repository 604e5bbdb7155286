"""Recipe registry: ``recipe.name`` in config → recipe class; the other keys are its constructor arguments."""

from __future__ import annotations

from typing import Any

from generation.best_of_n import wrap
from generation.recipes.attr_prompt import AttrPrompt
from generation.recipes.augment import Augment
from generation.recipes.back_translate import BackTranslate
from generation.recipes.base import Recipe, Sample
from generation.recipes.cascade import Cascade
from generation.recipes.critique_revise import CritiqueRevise
from generation.recipes.dialogue import Dialogue
from generation.recipes.doc_qa import DocQA
from generation.recipes.entigraph import EntiGraph
from generation.recipes.graded_relevance import GradedRelevance
from generation.recipes.judge import Judge
from generation.recipes.pseudo_label import PseudoLabel
from generation.recipes.reverse_gen import ReverseGen
from generation.recipes.self_instruct import SelfInstruct
from generation.recipes.targen import TarGEN
from generation.recipes.taxonomy import Taxonomy
from generation.recipes.template import Template
from generation.recipes.true_teacher import TrueTeacher

RECIPES: dict[str, type] = {
    cls.name: cls
    for cls in (
        SelfInstruct,
        Template,
        AttrPrompt,
        EntiGraph,
        DocQA,
        Augment,
        Dialogue,
        TarGEN,
        BackTranslate,
        PseudoLabel,
        Taxonomy,
        Judge,
        CritiqueRevise,
        GradedRelevance,
        Cascade,
        TrueTeacher,
        ReverseGen,
    )
}


def build_recipe(config: dict[str, Any]) -> Recipe:
    params = dict(config)
    name = params.pop("name", None)
    params.pop("builtin_seeds", None)  # read by source=builtin, not by the recipe
    best_of_n = params.pop("best_of_n", None)
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; valid choices: {sorted(RECIPES)}")
    try:
        recipe = RECIPES[name](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for recipe {name!r}: {exc}") from exc
    return wrap(recipe, best_of_n)


__all__ = ["RECIPES", "Recipe", "Sample", "build_recipe"]
