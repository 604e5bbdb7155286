"""``python -m rayjobs.distill src.uri=... sink.uri=... [student=tfidf_logreg] [eval.gold.uri=...]``: a student
distilled from a finished labelling run's LLM labels, written as a new run whose rows carry ``student_label``,
``student_confidence`` (out of fold), ``label_issue`` and ``label_quality`` (annotation/student.py). No engine starts.

The student trains in the driver on every labelled row (data/ and rejected/) and is kept as binary artifacts:
``student`` (the model in skops format and its classes, published to ``artifacts/student/``) and
``student_predictions`` (the out-of-fold columns by row id, Arrow), both reused when a killed pass is resumed. The
rows then flow as any post-pass's (rayjobs/postpass.py), each block joined with the predictions by ``id``.
``python -m rayjobs.generate ... student=tfidf_logreg`` runs this after the generation, in the same output.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import posixpath
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import ActorPoolStrategy

from annotation import student as students
from generation.recipes import build_recipe
from generation.state import RunStateActor
from rayjobs.artifacts import ArtifactStore
from rayjobs.cli import entry_point
from rayjobs.commit import SUCCESS, Heartbeat, attempts, reconcile
from rayjobs.evaluation import enabled as evaluation_enabled
from rayjobs.evaluation import evaluate_run, read_gold
from rayjobs.pipeline import (
    RunResult,
    committed_rows,
    filter_and_write,
    finalize,
    init_ray,
    load_artifacts,
    save_artifact,
    storage_options,
)
from rayjobs.postpass import (
    BLOCK_ROWS,
    SourceRows,
    SourceRun,
    derived_config,
    open_derived,
    open_source,
    plan_items,
    source_summary,
)
from rayjobs.resources import check_workers
from rayjobs.rows import row_schema
from rayjobs.sink import Sink
from rayjobs.stats import RunStats

log = logging.getLogger("synthray")

STUDENT, PREDICTIONS = "student", "student_predictions"
MODEL_FILE, META_FILE, PREDICTIONS_FILE = "model.skops", "meta.json", "predictions.arrow"
COLUMNS = {
    "student_label": pa.string(),
    "student_confidence": pa.float64(),
    "label_issue": pa.bool_(),
    "label_quality": pa.float64(),
}
OPTIONS = ("c", "ngram_max", "max_features")


def student_fields(config: Mapping[str, Any], text_fields: list[str]) -> tuple[str, str, str | None]:
    """(text column, label column, weight column) the student reads."""
    student = config["student"]
    text = student.get("text_field") or text_fields[0]
    label = student.get("label_field") or (config.get("eval") or {}).get("prediction_field") or "label"
    return text, label, student.get("weight_field")


def distill_config(config: dict[str, Any], source: SourceRun) -> dict[str, Any]:
    """The derived run's config (rayjobs/postpass.py): no filters; this pass's student and evaluation."""
    if (config.get("student") or {}).get("kind", "none") == "none":
        raise ValueError(f"student=none distils nothing; valid choices: {list(students.KINDS)} (student=<kind>)")
    evaluation = config.get("eval") or source.config.get("eval") or {}
    return derived_config(config, source, "distill", filters={}, student=config["student"], eval=evaluation)


def labelled_rows(source: SourceRun, text: str, label: str, weight: str | None) -> pa.Table:
    """id, text, label (and weight) of every data/ and rejected/ row with a label, in commit order."""
    tables = []
    for table in committed_rows(source.sink, source.commits):
        missing = [c for c in (text, label) if c not in table.column_names]
        if missing:
            raise ValueError(
                f"the source run's rows have no column {missing} for the student (student.text_field / "
                f"student.label_field); columns: {sorted(table.column_names)}"
            )
        columns = ["id", text, label] + ([weight] if weight and weight in table.column_names else [])
        tables.append(table.select(columns))
    rows = pa.concat_tables(tables, promote_options="default") if tables else pa.table({"id": [], text: [], label: []})
    return rows.filter(pc.and_(pc.is_valid(rows[label]), pc.is_valid(rows[text])))


def train(sink: Sink, source: SourceRun, config: dict[str, Any], text_fields: list[str]) -> dict[str, Any]:
    """The student's artifacts (built once, reused when intact) and the figures run.json keeps of it."""
    text, label, weight = student_fields(config, text_fields)
    section = config["student"]
    store = ArtifactStore(sink)
    rows = labelled_rows(source, text, label, weight)
    if rows.num_rows < 4:
        raise ValueError(f"the source run has {rows.num_rows} labelled rows in {label!r}: too few to train a student")

    def fit() -> dict[str, bytes]:
        started = time.perf_counter()
        weights = rows[weight].to_pylist() if weight and weight in rows.column_names else None
        distilled = students.distill(
            rows[text].to_pylist(),
            [str(v) for v in rows[label].to_pylist()],
            weights=None if weights is None else [1.0 if w is None else float(w) for w in weights],
            folds=int(section.get("folds", 5)),
            seed=int(config["run"].get("seed", 0)),
            kind=section["kind"],
            **{k: section[k] for k in OPTIONS if section.get(k) is not None},
        )
        seconds = time.perf_counter() - started
        predictions = pa.table(
            {
                "id": rows["id"],
                "student_label": distilled.student_labels,
                "student_confidence": distilled.student_confidences,
                "label_issue": distilled.label_issues,
                "label_quality": distilled.label_quality,
            }
        )
        buffer = io.BytesIO()
        with pa.ipc.new_file(buffer, predictions.schema) as writer:
            writer.write_table(predictions)
        meta = {
            "kind": section["kind"],
            "classes": distilled.classes,
            "folds": distilled.folds,
            "rows": rows.num_rows,
            "text_field": text,
            "label_field": label,
            "train_seconds": round(seconds, 2),
        }
        store.write(
            STUDENT, {MODEL_FILE: students.dumps(distilled.model), META_FILE: json.dumps(meta).encode()}, publish=True
        )
        return {PREDICTIONS_FILE: buffer.getvalue()}

    store.read_or_build(PREDICTIONS, fit)
    model = store.read(STUDENT)
    if model is None:  # the predictions survived a crash but the model did not: train again
        store.write(PREDICTIONS, fit())
        model = store.read(STUDENT)
    meta = json.loads(model[META_FILE])
    predictions = read_predictions(store)
    return figures(meta, rows, predictions, text, label, int(section.get("examples", 10)))


def read_predictions(store: ArtifactStore) -> pa.Table:
    files = store.read(PREDICTIONS)
    if files is None:
        raise FileNotFoundError("the student's predictions artifact is missing or damaged; rerun the same command")
    return pa.ipc.open_file(pa.BufferReader(files[PREDICTIONS_FILE])).read_all()


def figures(meta: dict, rows: pa.Table, predictions: pa.Table, text: str, label: str, examples: int) -> dict:
    """Agreement with the LLM (out of fold), label issues and the least plausible ones as examples."""
    joined = rows.join(predictions, "id")
    agree = pc.sum(pc.equal(joined[label].cast(pa.string()), joined["student_label"])).as_py() or 0
    issues = joined.filter(joined["label_issue"]).sort_by("label_quality").slice(0, examples)
    return {
        "model": meta["kind"],
        "rows": meta["rows"],
        "folds": meta["folds"],
        "classes": meta["classes"],
        "train_seconds": meta.get("train_seconds"),
        "agreement": round(agree / max(1, joined.num_rows), 4),
        "label_issues": pc.sum(joined["label_issue"]).as_py() or 0,
        "examples": [
            {
                "id": r["id"],
                "text": str(r[text]),
                "label": str(r[label]),
                "student_label": r["student_label"],
                "label_quality": r["label_quality"],
            }
            for r in issues.to_pylist()
        ],
    }


class StudentColumns:
    """Ray Data UDF: a block of the derived run's rows with the student's columns joined by ``id`` (rows without a
    label, such as errors/, get nulls)."""

    def __init__(self, *, uri: str, storage_options: dict[str, Any]) -> None:
        self.store = ArtifactStore(Sink(uri, storage_options))
        self.predictions: dict[str, dict[str, Any]] | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.predictions is None:  # loaded once per actor, on its first block
            table = read_predictions(self.store)
            self.predictions = {row.pop("id"): row for row in table.to_pylist()}
        found = [self.predictions.get(row_id, {}) for row_id in batch["id"].to_pylist()]
        for name, type_ in COLUMNS.items():
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, name, pa.array([f.get(name) for f in found], type_))
        return batch


def run(config: dict[str, Any], started: float | None = None) -> RunResult:
    """Distil a student from the finished run at ``src.uri`` into ``sink.uri``; rerunning the same command resumes."""
    source = open_source(config["src"], storage_options({**config["src"], "uri": config["src"].get("uri")}))
    derived = distill_config(config, source)
    recipe = build_recipe(derived["recipe"])
    text_fields = list(source.record["run"].get("text_fields") or recipe.text_fields)
    schema = row_schema({**recipe.columns, **COLUMNS})
    check_workers(derived["cluster"])
    gold = (
        read_gold(derived["eval"]["gold"], storage_options(derived["eval"]["gold"]))
        if evaluation_enabled(derived)
        else None
    )
    sink, committed = open_derived(derived, source)
    covered = {seed for commit in committed for seed in commit.seed_ids}
    items, resumed = plan_items(source, covered, int(config.get("block_rows", BLOCK_ROWS)))
    with Heartbeat(sink):
        student = train(sink, source, derived, text_fields)
        log.info(
            "student %s on %d rows of %s: agreement with the LLM %.1f%%, %d label issues",
            student["model"],
            student["rows"],
            source.sink.uri,
            100 * student["agreement"],
            student["label_issues"],
        )
        init_ray(derived["cluster"])
        state = RunStateActor.remote(
            restored=load_artifacts(sink), persist=functools.partial(save_artifact, sink), expected_seeds=0
        )
        progress = RunStats(started=started or time.time())
        if items:
            for manifest in build_dataset(derived, source, items, recipe, schema, state).iter_batches(
                batch_format="pyarrow", batch_size=None
            ):
                progress.add_manifest(manifest)
        progress.finish()
        commits = reconcile(sink)
        stats = RunStats.from_commits(commits, progress)
        seeds = len(source.seed_ids)
        summary = {**stats.to_dict(seeds), "attempt": attempts(sink), "resumed_seeds": resumed}
        missing = seeds - summary["seeds_accounted"]
        if missing:
            raise RuntimeError(f"{missing} of the source's {seeds} seeds have no row; rerun the same command")
        extra: dict[str, Any] = {"source_run": source_summary(source), "postpass": "distill", "student": student}
        if gold is not None:
            llm = derived["eval"].get("prediction_field") or "label"
            fields = [(llm, "confidence"), ("student_label", "student_confidence")]
            extra["evaluation"], student["evaluation"] = evaluate_run(sink, commits, derived, gold, fields)
        finalize(sink, derived, summary, recipe, artifacts={}, extra=extra)
    return RunResult(sink, summary)


LLM_RUN = "_llm"  # where generate ... student=<kind> keeps the LLM's labelling run, inside its output (bookkeeping)


def generate_and_distill(config: dict[str, Any], started: float | None = None) -> RunResult:
    """``python -m rayjobs.generate ... student=<kind>``: the LLM labels into ``<sink.uri>/_llm`` (a run of its own,
    resumable, reused once finished), then the student is distilled from it into ``sink.uri``: one finished output."""
    from rayjobs.pipeline import run as generate

    inner = {
        **config,
        "sink": {**config["sink"], "uri": posixpath.join(str(config["sink"]["uri"]).rstrip("/"), LLM_RUN)},
        "student": {"kind": "none"},
        "eval": {**config["eval"], "gold": {**config["eval"]["gold"], "uri": None}},
    }
    overwrite = bool(config["run"].get("overwrite", False))
    labelled = Sink(inner["sink"]["uri"], storage_options(inner["sink"]))
    if overwrite or not labelled.exists(SUCCESS):
        generate(inner, started)
    else:
        log.info("the LLM's labels at %s are finished: distilling from them", labelled.uri)
    section = {k: config["sink"].get(k) for k in ("endpoint_url", "storage_options")}
    return run(
        {
            "src": {**section, "uri": labelled.uri},
            "sink": config["sink"],
            "cluster": config["cluster"],
            "student": config["student"],
            "eval": config["eval"],
            "run": {k: config["run"][k] for k in ("name", "seed", "overwrite") if k in config["run"]},
        },
        started,
    )


def build_dataset(
    config: dict[str, Any], source: SourceRun, items: list[dict[str, Any]], recipe: Any, schema: pa.Schema, state: Any
) -> ray.data.Dataset:
    cluster = config["cluster"]
    ray.data.DataContext.get_current().target_max_block_size = None  # a block of whole commits is never split
    light = float(cluster.get("stage_cpus", 0.25))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    read = dict(uri=source.sink.uri, storage_options=source.sink.storage_options, schema=schema, source_steps=[])
    ds = ds.map_batches(
        SourceRows,
        batch_format="pyarrow",
        batch_size=None,
        fn_constructor_kwargs=read,
        compute=ActorPoolStrategy(size=int(cluster.get("read_workers", 1))),
        num_cpus=light,
    )
    ds = ds.map_batches(
        StudentColumns,
        batch_format="pyarrow",
        batch_size=None,
        fn_constructor_kwargs=dict(uri=config["sink"]["uri"], storage_options=storage_options(config["sink"])),
        compute=ActorPoolStrategy(size=int(cluster.get("filter_workers", 1))),
        num_cpus=light,
    )
    return filter_and_write(ds, config, recipe, {}, list(recipe.text_fields), {}, state)


main = entry_point("distill", run)


if __name__ == "__main__":
    main()
