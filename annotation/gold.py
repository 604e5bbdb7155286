"""A run's labels against a little gold data: agreement, per-class figures, calibration, the precision threshold.

"Automated annotation requires validation" (Pangakis et al., 2023): LLM labels are checked against human labels
before they are trusted. Labels are compared after ``label_map`` (prediction → gold name: a taxonomy invents its own
names); categorical figures come from scikit-learn (accuracy, macro-F1, per-class precision/recall/F1, Cohen's kappa,
the confusion matrix); with a confidence per row, the expected calibration error over 10 equal-width bins (Guo et al.,
2017) and its reliability table; numeric predictions (judge scores) get MAE and Spearman's rho instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

BUILTIN = "builtin"
BINS = 10
FIRST = 20  # gold ids absent from the output, and disagreements, listed in the report


def builtin_gold() -> dict[str, str]:
    """Gold labels of the package's built-in texts (``source=builtin`` of ``pseudo_label``), written for them."""
    text = resources.files("annotation").joinpath("data", "texts_gold.jsonl").read_text(encoding="utf-8")
    return {row["id"]: row["label"] for row in map(json.loads, text.splitlines()) if row}


def gold_labels(rows: Iterable[tuple[str, dict[str, Any]]], where: str, id_field: str, label_field: str) -> dict:
    """id → gold label from (seed id, row) pairs of a gold file; a row without the label field names it."""
    gold = {}
    for seed_id, row in rows:
        if label_field not in row or row[label_field] in (None, ""):
            present = sorted(row)
            raise ValueError(
                f"gold file {where}: row {seed_id!r} has no {label_field!r} (eval.gold.label_field); "
                f"its fields are {present}"
            )
        gold[str(row.get(id_field, seed_id))] = row[label_field]
    if not gold:
        raise ValueError(f"gold file {where} holds no rows")
    return gold


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def evaluate(
    rows: Iterable[Mapping[str, Any]],
    gold: Mapping[str, Any],
    where: str,
    label_map: Mapping[str, str] | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """Figures of ``rows`` (``seed_id``, ``prediction``, ``confidence`` or None, ``kind`` data|rejected; the first row
    of a seed counts) against ``gold`` (id → label). ``where`` names the gold file in errors."""
    predicted: dict[str, dict[str, Any]] = {}
    for row in rows:
        predicted.setdefault(str(row["seed_id"]), dict(row))
    matched = [seed for seed in gold if seed in predicted]
    if not matched:
        sample = sorted(gold)[:3]
        raise ValueError(
            f"gold file {where}: none of its {len(gold)} ids (e.g. {sample}) is the seed_id of an output row; "
            "eval.gold.id_field names the gold column holding the seeds' ids"
        )
    figures: dict[str, Any] = {"gold_file": where, "gold": len(gold), "n": len(matched)}
    figures["coverage"] = round(len(matched) / len(gold), 4)
    for kind in ("data", "rejected"):
        figures[f"coverage_{kind}"] = round(sum(predicted[s]["kind"] == kind for s in matched) / len(gold), 4)
    absent = [seed for seed in gold if seed not in predicted]
    figures["absent"] = {"count": len(absent), "first": absent[:FIRST]}
    mapping = dict(label_map or {})
    pairs = [(gold[s], predicted[s].get("prediction"), predicted[s].get("confidence"), s) for s in matched]
    numeric = all(_number(g) is not None for g, *_ in pairs) and all(_number(p) is not None for _, p, *_ in pairs)
    if numeric:
        figures.update(_numeric([(float(g), float(p)) for g, p, *_ in pairs]))
    else:
        pairs = [(str(g), None if p is None else str(mapping.get(str(p), p)), c, s) for g, p, c, s in pairs]
        figures.update(_categorical([(g, p) for g, p, *_ in pairs]))
        confident = [(c, g == p) for g, p, c, _ in pairs if _number(c) is not None]
        if confident:
            figures.update(calibration(confident))
            if target_precision is not None:
                figures["target_precision"] = precision_threshold(confident, target_precision)
        wrong = [{"id": s, "gold": g, "predicted": p, "confidence": c} for g, p, c, s in pairs if g != p]
        figures["disagreements"] = {"count": len(wrong), "first": wrong[:FIRST]}
    return figures


def _categorical(pairs: list[tuple[str, str | None]]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, precision_recall_fscore_support

    truth = [g for g, _ in pairs]
    guess = ["(none)" if p is None else p for _, p in pairs]
    labels = sorted(set(truth) | set(guess))
    precision, recall, f1, support = precision_recall_fscore_support(truth, guess, labels=labels, zero_division=0)
    gold_labels_ = sorted(set(truth))
    per_class = {
        label: {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(n),
        }
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    }
    return {
        "accuracy": round(float(accuracy_score(truth, guess)), 4),
        # Over the gold classes: a label only the model uses adds its false positives to the others' precision.
        "macro_f1": round(sum(per_class[label]["f1"] for label in gold_labels_) / len(gold_labels_), 4),
        "kappa": round(float(cohen_kappa_score(truth, guess)), 4) if len(set(truth) | set(guess)) > 1 else 1.0,
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": confusion_matrix(truth, guess, labels=labels).tolist()},
    }


def _numeric(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    truth, guess = [g for g, _ in pairs], [p for _, p in pairs]
    mae = sum(abs(g - p) for g, p in pairs) / len(pairs)
    rho = spearmanr(truth, guess).statistic if len(set(truth)) > 1 and len(set(guess)) > 1 else None
    return {"mae": round(mae, 4), "spearman": None if rho is None else round(float(rho), 4)}


def calibration(confident: list[tuple[float, bool]]) -> dict[str, Any]:
    """Expected calibration error over ``BINS`` equal-width confidence bins, and the reliability table."""
    table = []
    for index in range(BINS):
        low, high = index / BINS, (index + 1) / BINS
        members = [(c, ok) for c, ok in confident if low <= float(c) < high or (index == BINS - 1 and float(c) == 1)]
        if members:
            mean = sum(float(c) for c, _ in members) / len(members)
            accuracy = sum(ok for _, ok in members) / len(members)
            table.append(
                {
                    "bin": [low, high],
                    "count": len(members),
                    "confidence": round(mean, 4),
                    "accuracy": round(accuracy, 4),
                }
            )
    ece = sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / len(confident)
    return {"ece": round(ece, 4), "reliability": table}


def precision_threshold(confident: list[tuple[float, bool]], target: float) -> dict[str, Any]:
    """The lowest confidence threshold whose kept rows (confidence ≥ it) reach ``target`` precision on gold, with
    the precision and the share of gold rows it keeps; ``threshold`` None when no threshold reaches it."""
    if not 0 < target <= 1:
        raise ValueError(f"eval.target_precision must be in (0, 1], got {target!r}")
    for threshold in sorted({float(c) for c, _ in confident}):
        kept = [ok for c, ok in confident if float(c) >= threshold]
        precision = sum(kept) / len(kept)
        if precision >= target:
            return {
                "target": target,
                "threshold": threshold,
                "precision": round(precision, 4),
                "kept": round(len(kept) / len(confident), 4),
            }
    return {"target": target, "threshold": None, "precision": None, "kept": 0.0}
