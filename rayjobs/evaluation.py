"""Gold-set evaluation at the end of a run: the gold file read (local or s3, JSONL or Parquet, or the built-in set),
the committed data/ and rejected/ rows' predictions compared with it (annotation/gold.py), run.json's
``evaluation``. Not part of the run's fingerprint: it describes the rows, it does not change them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from annotation.gold import BUILTIN, builtin_gold, evaluate, gold_labels
from rayjobs.commit import Commit
from rayjobs.sink import Sink
from rayjobs.sources import iter_seeds

PREDICTED = ("data", "rejected")


def enabled(config: Mapping[str, Any]) -> bool:
    return bool(((config.get("eval") or {}).get("gold") or {}).get("uri"))


def read_gold(section: Mapping[str, Any], storage_options: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(id → gold label, where it came from) of ``eval.gold``: ``builtin`` or a JSONL/Parquet file, directory, glob
    or s3:// URI."""
    uri = str(section["uri"])
    if uri == BUILTIN:
        return builtin_gold(), "builtin (annotation/data/texts_gold.jsonl)"
    id_field, label_field = section.get("id_field") or "id", section.get("label_field") or "label"
    kind = "parquet" if uri.rstrip("/").endswith(".parquet") or section.get("format") == "parquet" else "jsonl"
    source = {
        "kind": kind,
        "uri": uri,
        "columns": {id_field: "id"} if id_field != "id" else {},
        "storage_options": dict(storage_options),
    }

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for seed_id, seed, error in iter_seeds(source):
            if error:
                raise ValueError(f"gold file {uri}: row {seed_id} is unusable: {error}")
            yield seed_id, json.loads(seed)

    try:
        return gold_labels(rows(), uri, "id", label_field), uri
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"eval.gold.uri: {str(exc).removeprefix('source.uri ')}") from None


def predictions(table: Any, kind: str, prediction_field: str, confidence_field: str) -> Iterator[dict[str, Any]]:
    """seed_id, prediction, confidence and kind of each row of a committed data/ or rejected/ shard."""
    if prediction_field not in table.column_names:
        raise ValueError(
            f"eval.prediction_field {prediction_field!r} is not a column of the output; columns: "
            f"{sorted(table.column_names)}"
        )
    seeds, values = table["seed_id"].to_pylist(), table[prediction_field].to_pylist()
    confidences = table[confidence_field].to_pylist() if confidence_field in table.column_names else [None] * len(seeds)
    for seed_id, value, confidence in zip(seeds, values, confidences, strict=True):
        yield {"seed_id": seed_id, "prediction": value, "confidence": confidence, "kind": kind}


def evaluate_run(
    sink: Sink,
    commits: list[Commit],
    config: Mapping[str, Any],
    gold: tuple[dict[str, Any], str],
    fields: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    """run.json's ``evaluation`` of the committed rows against ``gold`` (``read_gold``'s): one per (prediction
    column, confidence column) of ``fields``, by default ``eval.prediction_field`` with ``confidence``; the shards are
    read once for all."""
    section = config["eval"]
    fields = list(fields) or [(section.get("prediction_field") or "label", "confidence")]
    rows: list[list[dict[str, Any]]] = [[] for _ in fields]
    for commit in commits:
        for shard in commit.shards:
            if shard["kind"] in PREDICTED:
                table = sink.read_table(shard["path"])
                for found, (field, confidence) in zip(rows, fields, strict=True):
                    found.extend(predictions(table, shard["kind"], field, confidence))
    labels, where = gold
    options = {"label_map": section.get("label_map") or {}, "target_precision": section.get("target_precision")}
    return [
        {"prediction_field": field, **evaluate(found, labels, where, **options)}
        for found, (field, _) in zip(rows, fields, strict=True)
    ]


def evaluation_line(figures: dict[str, Any]) -> str:
    """The gold-set figures in one sentence (the report's headline and the dataset card's)."""
    parts = [f"{figures['n']:,} of {figures['gold']:,} gold rows labelled (coverage {figures['coverage']:.1%})"]
    for key, name in (
        ("accuracy", "accuracy"),
        ("macro_f1", "macro-F1"),
        ("kappa", "Cohen's kappa"),
        ("ece", "ECE"),
        ("mae", "MAE"),
        ("spearman", "Spearman"),
    ):
        if figures.get(key) is not None:
            parts.append(f"{name} {figures[key]:.3f}")
    target = figures.get("target_precision")
    if target:
        parts.append(
            f"precision {target['target']:.0%} reached at confidence ≥ {target['threshold']:.3f} ({target['kept']:.1%}"
            " of gold rows kept)"
            if target["threshold"] is not None
            else f"precision {target['target']:.0%} not reached"
        )
    return "; ".join(parts)


def student_line(student: dict[str, Any]) -> str:
    parts = [
        f"trained on {student['rows']:,} LLM-labelled rows ({student['folds']}-fold out-of-fold predictions)",
        f"agreement with the LLM {student['agreement']:.1%}",
        f"label issues {student['label_issues']:,} ({student['label_issues'] / max(1, student['rows']):.1%})",
    ]
    if student.get("evaluation"):
        parts.append(f"student accuracy on gold {student['evaluation'].get('accuracy', 0):.3f}")
    return "; ".join(parts)
