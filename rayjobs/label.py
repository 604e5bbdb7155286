"""``python -m rayjobs.label student.uri=RUN source=jsonl source.uri=... sink.uri=...``: a whole corpus labelled by
the student a distilled run holds (its ``student`` artifact, checked against its manifest), no LLM, with the full
output contract (commits, resume, run.json, report, card, ``_SUCCESS``). The report sets its time beside what the
LLM took per row in the run the student learned from.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any, ClassVar

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from annotation import student as students
from generation.actor import sample_id
from generation.seeds import parse_seed
from generation.state import RunStateActor
from rayjobs.artifacts import ArtifactStore
from rayjobs.cli import entry_point
from rayjobs.commit import SUCCESS, Heartbeat, attempts, open_run, reconcile
from rayjobs.distill import META_FILE, MODEL_FILE, STUDENT
from rayjobs.pipeline import (
    RunResult,
    filter_and_write,
    finalize,
    init_ray,
    load_artifacts,
    save_artifact,
    source_section,
    storage_options,
)
from rayjobs.resources import check_workers
from rayjobs.rows import row_schema
from rayjobs.sink import Sink
from rayjobs.sources import SeedDatasource, plan_seeds
from rayjobs.stats import RunStats

log = logging.getLogger("synthray")


class StudentLabels:
    """What the output and the report know of this run's rows (it stands where a recipe stands in a generation)."""

    name: ClassVar[str] = "student_label"
    columns: ClassVar[dict[str, pa.DataType]] = {"text": pa.string(), "label": pa.string(), "confidence": pa.float64()}
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    balance_fields: ClassVar[tuple[str, ...]] = ("label",)


def load_student(uri: str, options: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """(the saved model, its meta) from the run at ``uri``; a run without an intact student artifact is refused."""
    sink = Sink(uri, options)
    if not sink.exists(SUCCESS):
        raise ValueError(f"student.uri {uri} holds no finished run ({SUCCESS} is missing)")
    files = ArtifactStore(sink).read(STUDENT)
    if files is None:
        raise ValueError(
            f"student.uri {uri} holds no intact student (_synthray/artifacts/{STUDENT}/): make one with "
            "python -m rayjobs.distill, or generate with student=tfidf_logreg"
        )
    return files[MODEL_FILE], json.loads(files[META_FILE])


class StudentLabeler:
    """Ray Data UDF: seeds → rows labelled by the student (its model loaded once per actor, from the run it came
    from, checksums verified). A seed without the student's text field is an ``input`` error row."""

    def __init__(self, *, uri: str, storage_options: dict[str, Any], run_name: str, schema: pa.Schema) -> None:
        model, self.meta = load_student(uri, storage_options)
        self.model, self.model_name = students.loads(model), f"student:{self.meta['kind']}"
        self.run_name, self.schema = run_name, schema

    def __call__(self, batch: pa.Table) -> pa.Table:
        field = self.meta["text_field"]
        rows, texts, at = [], [], []
        for seed_id, seed_json, error in zip(
            *(batch[c].to_pylist() for c in ("seed_id", "seed", "error")), strict=True
        ):
            seed, why = (None, error) if error else parse_seed(seed_json)
            row = {
                "id": sample_id(self.run_name, seed_id, 0),
                "seed_id": seed_id,
                "sample_index": 0,
                "recipe": StudentLabels.name,
                "model": self.model_name,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            }
            text = seed.get(field) if seed is not None else None
            if not isinstance(text, str) or not text.strip():
                why = why or f"seed has no text in {field!r} (the field the student was trained on)"
                rows.append({**row, "status": "error", "stage": "input", "error": why, "seed": seed_json})
                continue
            at.append(len(rows))
            texts.append(text)
            rows.append({**row, "status": "ok", "text": text})
        labels, confidences = students.predict(self.model, self.meta["classes"], texts)
        for index, label, confidence in zip(at, labels, confidences, strict=True):
            rows[index].update(label=label, confidence=confidence)
        return pa.Table.from_pylist(rows, schema=self.schema)


def llm_comparison(uri: str, options: dict[str, Any], rows: int, seconds: float) -> dict[str, Any] | None:
    """This run's time beside the LLM's for the same number of rows, from the labelling run the student came from."""
    record = json.loads(Sink(uri, options).read_text("run.json"))
    llm = record.get("source_run") or {}
    if not llm.get("wall_s") or not llm.get("seeds_read"):
        return None
    per_row = llm["wall_s"] / llm["seeds_read"]
    return {
        "rows": rows,
        "student_s": round(seconds, 2),
        "llm_s": round(per_row * rows, 2),
        "llm_run": llm.get("uri"),
        "speedup": round(per_row * rows / seconds, 1) if seconds else None,
    }


def run(config: dict[str, Any], started: float | None = None) -> RunResult:
    started = started or time.time()
    uri = config["student"].get("uri")
    if not uri:
        raise ValueError("student.uri is required: a finished run holding a student (rayjobs.distill's output)")
    student_options = storage_options({**config["student"], "uri": uri})
    _, meta = load_student(uri, student_options)  # refused here, before Ray starts
    recipe = StudentLabels()
    schema = row_schema(recipe.columns)
    config = {
        **config,
        "recipe": {"name": recipe.name, "student": uri},
        "model": {"name": f"student:{meta['kind']}", "engine": "student", "license": "trained on the run's labels"},
        "filters": {},
    }
    check_workers(config["cluster"])
    sink = Sink(config["sink"]["uri"], storage_options(config["sink"]), float(config["sink"].get("retry_s", 120)))
    block_rows = int(config.get("block_rows", 4096))
    plan = plan_seeds(config["source"], block_rows)
    if plan.seeds == 0:
        raise ValueError(f"the source yielded no seeds (uri={config['source'].get('uri')})")
    committed = open_run(sink, config, bool(config["run"].get("overwrite", False)))
    if committed:
        plan = plan_seeds(config["source"], block_rows, {seed for commit in committed for seed in commit.seed_ids})
    with Heartbeat(sink):
        init_ray(config["cluster"])
        state = RunStateActor.remote(
            restored=load_artifacts(sink), persist=functools.partial(save_artifact, sink), expected_seeds=0
        )
        progress = RunStats(started=started)
        labelling = time.perf_counter()
        if plan.chunks:
            cluster = config["cluster"]
            ds = ray.data.read_datasource(
                SeedDatasource(source_section(config), plan), num_cpus=0, override_num_blocks=len(plan.chunks)
            )
            ds = ds.map_batches(
                StudentLabeler,
                batch_format="pyarrow",
                batch_size=None,
                fn_constructor_kwargs=dict(
                    uri=uri, storage_options=student_options, run_name=config["run"]["name"], schema=schema
                ),
                compute=ActorPoolStrategy(size=int(config.get("workers", 1))),
                num_cpus=float(cluster.get("stage_cpus", 0.25)),
            )
            for manifest in filter_and_write(ds, config, recipe, {}, ["text"], {}, state).iter_batches(
                batch_format="pyarrow", batch_size=None
            ):
                progress.add_manifest(manifest)
        seconds = time.perf_counter() - labelling
        progress.finish()
        stats = RunStats.from_commits(reconcile(sink), progress)
        summary = {**stats.to_dict(plan.seeds), "attempt": attempts(sink), "resumed_seeds": plan.committed}
        missing = plan.seeds - summary["seeds_accounted"]
        if missing:
            raise RuntimeError(f"{missing} of {plan.seeds} seeds have no row; rerun the same command")
        compared = llm_comparison(uri, student_options, plan.seeds - plan.committed, seconds)
        if compared:
            summary["student_vs_llm"] = compared
        finalize(sink, config, summary, recipe, artifacts={})
    return RunResult(sink, summary)


main = entry_point("label", run)


if __name__ == "__main__":
    main()
