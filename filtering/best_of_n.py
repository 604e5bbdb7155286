"""The best_of_n step: of each seed's candidates in one group (generation/best_of_n.py), keep the best by the objective.

The pipeline adds this step after the configured filters when ``recipe.best_of_n.n`` > 1, so only candidates every
other filter kept compete. The others go to rejected/ with reason ``not_best`` and their score; every candidate
carries ``best_of_n_score``. With ``pairs`` the kept row also holds the group's best text (``chosen``), its worst
(``rejected``) and ``pair_margin`` (best minus worst score): a DPO preference pair; a group whose best and worst
tie (two equal judge grades) gets none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from filtering.base import Filter, Verdict, as_text

SCORE, CHOSEN, REJECTED, MARGIN = "best_of_n_score", "chosen", "rejected", "pair_margin"


def distinct_ratio(text: str, n: int) -> float:
    """Unique word n-grams over all word n-grams of ``text`` (0 when it has fewer than n words)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def objective_weights(objective: str | Mapping[str, float]) -> dict[str, float]:
    """objective → weight: one named objective weighs 1."""
    if isinstance(objective, str):
        return {objective: 1.0}
    return {str(k): float(v) for k, v in objective.items()}


class BestOfNFilter(Filter):
    """Args:
    objective: an objective name, or objective → weight (each scaled to [0, 1] within the group, then summed).
    field: the column the length and distinct-n objectives read.
    length_target: words to be closest to (``length``); None prefers the longest.
    distinct: n of distinct-n.
    classifier: ``max`` or ``min`` of ``classifier_score``.
    pairs: write chosen/rejected/pair_margin on the kept row.
    """

    name = "best_of_n"
    columns: ClassVar[dict[str, pa.DataType]] = {
        SCORE: pa.float64(),
        CHOSEN: pa.string(),
        REJECTED: pa.string(),
        MARGIN: pa.float64(),
    }

    def __init__(
        self,
        field: str,
        objective: str | Mapping[str, float] = "length",
        length_target: int | None = None,
        distinct: int = 2,
        classifier: str = "max",
        pairs: bool = False,
        **_: Any,
    ) -> None:
        super().__init__([field])
        self.field = field
        self.weights = objective_weights(objective)
        self.length_target, self.distinct, self.pairs = length_target, int(distinct), bool(pairs)
        self.sign = 1.0 if classifier == "max" else -1.0

    def bind_fields(self, default_fields: Any) -> None:
        """The compared column is ``field``."""

    def raw(self, objective: str, row: Mapping[str, Any]) -> float:
        """One objective's score of a candidate; higher is better, a missing score is -inf."""
        text = as_text(row.get(self.field))
        if objective == "length":
            words = len(text.split())
            return -abs(words - self.length_target) if self.length_target is not None else float(words)
        if objective == "distinct_n":
            return distinct_ratio(text, self.distinct)
        column = "classifier_score" if objective == "classifier" else "judge_score"
        value = row.get(column)
        if value is None:
            return -math.inf
        return self.sign * float(value) if objective == "classifier" else float(value)

    def scores(self, group: Sequence[Mapping[str, Any]]) -> list[float]:
        """The group's scores: one objective's own value, or the weighted sum of each scaled to [0, 1]."""
        if len(self.weights) == 1:
            [objective] = self.weights
            return [self.raw(objective, row) for row in group]
        total = [0.0] * len(group)
        for objective, weight in self.weights.items():
            values = [self.raw(objective, row) for row in group]
            finite = [v for v in values if math.isfinite(v)]
            low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
            for i, v in enumerate(values):
                scaled = (v - low) / (high - low) if math.isfinite(v) and high > low else 0.0
                total[i] += weight * scaled
        return total

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        groups: dict[tuple[Any, Any], list[int]] = {}
        for i, row in enumerate(rows):  # a seed's rows always arrive in one batch (a block is never split)
            groups.setdefault((row.get("seed_id"), row.get("candidate_group")), []).append(i)
        verdicts: list[Verdict] = [(True, None)] * len(rows)
        for members in groups.values():
            scores = self.scores([rows[i] for i in members])
            ranked = sorted(range(len(members)), key=lambda k: (-scores[k], rows[members[k]].get("sample_index", 0)))
            best, worst = ranked[0], ranked[-1]
            for k, i in enumerate(members):
                rows[i][SCORE] = scores[k] if math.isfinite(scores[k]) else None
                if k != best:
                    verdicts[i] = (False, f"not_best: score {scores[k]:.4g} < {scores[best]:.4g}")
            margin = scores[best] - scores[worst]
            if self.pairs and len(members) > 1 and math.isfinite(margin) and margin > 0:
                kept = rows[members[best]]
                kept[CHOSEN] = as_text(kept.get(self.field))
                kept[REJECTED] = as_text(rows[members[worst]].get(self.field))
                kept[MARGIN] = margin
        return verdicts
