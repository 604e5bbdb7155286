"""Gold-set evaluation: figures against a hand computation, a gold file whose ids match nothing, label_map, numeric
predictions; and a whole run whose votes are planted through the dry-run engine's echo mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotation.gold import builtin_gold, evaluate
from generation.seeds import builtin_seeds
from rayjobs.pipeline import run
from tests.conftest import write_jsonl

GOLD = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z"}


def _rows(predictions: dict[str, tuple[str, float | None]], kind: str = "data") -> list[dict]:
    return [{"seed_id": s, "prediction": p, "confidence": c, "kind": kind} for s, (p, c) in predictions.items()]


def test_figures_equal_a_hand_computation():
    rows = _rows({"a": ("X", 0.9), "b": ("y", 0.6), "c": ("y", 0.8)}) + _rows({"d": ("y", 0.7)}, "rejected")
    rows += _rows({"f": ("x", 0.5), "a": ("y", 0.1)})  # not gold; a second row of a seed does not count
    figures = evaluate(rows, GOLD, "gold.jsonl", label_map={"X": "x"}, target_precision=1.0)
    assert (figures["n"], figures["coverage"], figures["coverage_data"], figures["coverage_rejected"]) == (
        4,
        0.8,
        0.6,
        0.2,
    )
    # (x,x) (x,y) (y,y) (y,y): accuracy 3/4; x: P 1, R 1/2, F1 2/3; y: P 2/3, R 1, F1 4/5; kappa (0.75 - 0.5) / 0.5
    assert figures["accuracy"] == 0.75 and figures["kappa"] == 0.5
    assert figures["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2, abs=1e-4)
    assert figures["per_class"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert figures["confusion"] == {"labels": ["x", "y"], "matrix": [[1, 1], [0, 2]]}
    # One row per bin: |0 - 0.6| + |1 - 0.7| + |1 - 0.8| + |1 - 0.9|, over 4 rows
    assert figures["ece"] == pytest.approx(0.3, abs=1e-4) and len(figures["reliability"]) == 4
    assert figures["target_precision"] == {"target": 1.0, "threshold": 0.7, "precision": 1.0, "kept": 0.75}
    assert figures["absent"] == {"count": 1, "first": ["e"]}
    assert figures["disagreements"]["first"] == [{"id": "b", "gold": "x", "predicted": "y", "confidence": 0.6}]


def test_numeric_predictions_get_mae_and_spearman_and_unmatched_ids_fail_naming_the_file():
    figures = evaluate(_rows({"a": (1, None), "b": (3, None), "c": (3, None)}), {"a": 1, "b": 2, "c": 3}, "g")
    assert figures["mae"] == pytest.approx(1 / 3, abs=1e-4) and figures["spearman"] == pytest.approx(0.866, abs=1e-3)
    assert "accuracy" not in figures
    with pytest.raises(ValueError, match=r"gold file s3://b/gold.jsonl: none of its 5 ids .* eval.gold.id_field"):
        evaluate(_rows({"q": ("x", 0.5)}), GOLD, "s3://b/gold.jsonl")


def test_the_builtin_gold_set_labels_every_builtin_text():
    gold = builtin_gold()
    assert len(gold) == 100 and set(gold) == {row["id"] for row in builtin_seeds("texts")}
    labels = {"billing", "technical problem", "account access", "delivery", "feature request", "praise"}
    assert set(gold.values()) == labels


def test_a_run_with_planted_votes_reports_its_gold_figures(ray_session, dry_config, tmp_path):
    planted = {"m1": "billing", "m2": "billing", "m3": "delivery", "m4": "praise", "m5": "praise", "m6": "delivery"}
    gold = {"m1": "billing", "m2": "delivery", "m3": "delivery", "m4": "praise", "m5": "praise", "m7": "billing"}
    # Echo mode answers each vote with the prompt itself: a prompt that is the seed's text plants the vote.
    seeds = write_jsonl(
        tmp_path / "msgs.jsonl", [{"id": k, "text": json.dumps({"label": v})} for k, v in planted.items()]
    )
    gold_file = write_jsonl(tmp_path / "gold.jsonl", [{"message": k, "category": v} for k, v in gold.items()])
    result = run(
        dry_config(
            "recipe=pseudo_label",
            "recipe.prompt='{text}'",
            "model.echo=true",
            "source=jsonl",
            f"source.uri={seeds}",
            f"eval.gold.uri={gold_file}",
            "eval.gold.id_field=message",
            "eval.gold.label_field=category",
        )
    )
    record = json.loads((Path(result.sink.uri) / "run.json").read_text())
    figures = record["evaluation"]
    # 5 matched: m2 wrong; m7 absent; every vote agrees, so confidence 1 everywhere and ECE = 1 - accuracy
    assert (figures["n"], figures["coverage"], figures["accuracy"]) == (5, round(5 / 6, 4), 0.8)
    assert figures["ece"] == pytest.approx(0.2, abs=1e-4) and figures["absent"]["first"] == ["m7"]
    assert figures["disagreements"]["first"][0]["id"] == "m2"
    report = (Path(result.sink.uri) / "report.html").read_text()
    assert "Against gold" in report and "Confusion matrix" in report and "reliability curve" in report
    assert "accuracy 0.800" in (Path(result.sink.uri) / "README.md").read_text()


def test_a_gold_file_that_is_missing_or_lacks_the_label_field_fails_before_the_run(dry_config, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"eval.gold.uri: '.*nowhere.jsonl' does not exist"):
        run(dry_config("recipe=pseudo_label", f"eval.gold.uri={tmp_path / 'nowhere.jsonl'}"))
    wrong = write_jsonl(tmp_path / "gold.jsonl", [{"id": "txt-01", "class": "billing"}])
    with pytest.raises(ValueError, match=r"row 'txt-01' has no 'label' \(eval.gold.label_field\); its fields are"):
        run(dry_config("recipe=pseudo_label", f"eval.gold.uri={wrong}"))
