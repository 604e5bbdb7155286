"""The run report: one self-contained report.html (figures embedded as PNG) written into the sink.

Rebuild it, and the dataset card, from an existing output (local or s3://) without rerunning anything:

    python -m rayjobs.report outputs/synthray-demo
    python -m rayjobs.report s3://bucket/runs/demo --endpoint-url http://127.0.0.1:8333
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from filtering.base import is_messages
from rayjobs import plots, quality
from rayjobs.cache import cache_line
from rayjobs.card import render_card
from rayjobs.engines import ROLE_COLUMNS, cascade_line, role_rows
from rayjobs.evaluation import evaluation_line, student_line
from rayjobs.sink import Sink
from rayjobs.sources import iter_seeds

log = logging.getLogger("synthray")

EXAMPLES = 12  # kept examples shown, and rejected ones per filter

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1180px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f5f5f5}.num{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;margin:0;max-height:14em;overflow:auto;font-size:12.5px}h1{margin-bottom:0}
.sub{color:#666}.tiles{display:flex;flex-wrap:wrap;gap:.6em;margin:1em 0}.tile{border:1px solid #ddd;
border-radius:6px;padding:.5em .9em;min-width:8em}.tile b{display:block;font-size:1.35em}img{max-width:100%}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em;
margin-bottom:.6em}.card.rejected{border-color:#e45756}.tag{display:inline-block;background:#eee;border-radius:4px;
padding:0 .4em;margin-right:.4em;font-size:12px}.tag.why{background:#fde2e1}select{margin:.3em 0 .8em}"""

# The sample browser's only script: show the rejected examples of one filter.
_SCRIPT = """document.getElementById('reject-filter').addEventListener('change', function (event) {
  var step = event.target.value;
  document.querySelectorAll('#rejected .card').forEach(function (card) {
    card.style.display = (step === '' || card.dataset.step === step) ? '' : 'none';
  });
});"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(uri: str | None, alt: str) -> str:
    return f"<img src='{uri}' alt='{_e(alt)}'>" if uri else f"<p class=sub>({_e(alt)}: not enough data)</p>"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class=sub>(none)</p>"
    cells = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{cells}</table>"


def _cell(value: Any) -> str:
    return f"<td class=num>{value:,}</td>" if isinstance(value, int) else f"<td>{_e(value)}</td>"


def _tiles(summary: dict[str, Any], run: dict[str, Any]) -> str:
    items = [
        ("seeds", f"{summary['seeds_read']:,}"),
        ("kept", f"{summary['kept']:,}"),
        ("rejected", f"{summary['rejected']:,}"),
        ("errors", f"{summary['errors']:,}"),
        ("prompt tokens", f"{summary['prompt_tokens']:,}"),
        ("completion tokens", f"{summary['completion_tokens']:,}"),
        ("wall time", f"{summary['wall_s']:.1f} s"),
        ("completion tok/s", f"{summary['completion_tokens_per_s']:.1f}"),
        ("engine replicas", f"{run.get('replicas', 1)}"),
    ]
    for key, label in (("engine_ready_s", "engine ready after"), ("first_sample_s", "first sample after")):
        if key in summary:
            items.append((label, f"{summary[key]:.1f} s"))
    return "<div class=tiles>" + "".join(f"<div class=tile><b>{v}</b>{_e(k)}</div>" for k, v in items) + "</div>"


def funnel_stages(summary: dict[str, Any]) -> list[tuple[str, int, str]]:
    """seeds → generated → each filter's drops, in filter order → kept, and errors."""
    order = [f["step"] for f in summary.get("filters") or []]
    recipe_drops = [k for k in summary["rejected_by"] if k not in order]  # a recipe's own checks come first
    stages = [("seeds read", summary["seeds_read"], "flow"), ("samples generated", summary["generated"], "flow")]
    stages += [(f"dropped by {k}", summary["rejected_by"][k], "drop") for k in recipe_drops]
    stages += [(f"dropped by {k}", summary["rejected_by"].get(k, 0), "drop") for k in order]
    return stages + [("kept", summary["kept"], "kept"), ("errors", summary["errors"], "error")]


def _funnel_section(summary: dict[str, Any], reasons: dict[str, list], errors: dict[str, list]) -> str:
    steps = summary.get("filters") or []
    rows = [
        [f["step"], f["seen"], f["kept"], f["dropped"], f"{f['seconds']:.3f}", _reasons(reasons.get(f["step"], []))]
        for f in steps
    ]
    recipe_rows = [
        [k, "", "", n, "", _reasons(reasons.get(k, []))]
        for k, n in summary["rejected_by"].items()
        if k not in {f["step"] for f in steps}
    ]
    by_stage = sorted(summary["errors_by_stage"].items())
    error_rows = [[stage, n, _reasons(errors.get(stage, []))] for stage, n in by_stage]
    return (
        "<h2 id=funnel>Funnel</h2>"
        + _img(plots.funnel(funnel_stages(summary)), "funnel: rows at each stage")
        + "<h3>Filters (in order) and their top reasons</h3>"
        + _table(["filter", "seen", "kept", "dropped", "seconds", "top reasons"], recipe_rows + rows)
        + "<h3>Errors by stage</h3>"
        + _table(["stage", "rows", "top errors"], error_rows)
    )


def _source_section(record: dict[str, Any]) -> str:
    """A derived run's funnel beside the funnel of the run it read, stage by stage."""
    source = record.get("source_run")
    if not source:
        return ""
    before = {label: n for label, n, _ in funnel_stages({**source, "filters": source.get("filters") or []})}
    after = {label: n for label, n, _ in funnel_stages(record["summary"])}
    labels = list(dict.fromkeys([*before, *after]))
    rows = [[label, before.get(label, ""), after.get(label, "")] for label in labels]
    notes = "".join(f"<p>{_e(note)}</p>" for note in record.get("notes") or [])
    return (
        f"<h2 id=source>Source run and this {_e(record.get('postpass', 'post-pass'))}</h2>"
        f"<p>read from <code>{_e(source['uri'])}</code> (run {_e(source.get('name'))})</p>{notes}"
        + _table(["stage", "source run", "this run"], rows)
    )


def _reasons(top: list[list[Any]]) -> str:
    return "; ".join(f"{reason} ({n:,})" for reason, n in top)


def _quality_section(figures: dict[str, Any], balance: dict[str, dict[str, int]]) -> str:
    fields = figures["fields"]
    sample = figures["sample_rows"]
    note = (
        f"Computed on the first {sample:,} of {figures['kept_rows']:,} kept rows."
        if sample < figures["kept_rows"]
        else f"Computed on all {sample:,} kept rows."
    )
    rows = [
        [name, *(f"{f[f'distinct_{n}']:.3f}" for n in (1, 2, 3)), f"{f['compression_ratio']:.2f}"]
        for name, f in fields.items()
    ]
    dedup = figures.get("dedup") or {}
    dup_rows = []
    if "before" in dedup:
        dup_rows.append(["before dedup (found by the dedup filters)", f"{100 * dedup['before']:.2f}%"])
    if "after" in dedup:
        dup_rows.append(["after (exact repeats among kept rows)", f"{100 * dedup['after']:.2f}%"])
    overlap = figures.get("seed_overlap")
    overlap_html = (
        _table(
            ["dataset vocabulary", "seed vocabulary", "dataset words found in seeds", "seed words found in dataset"],
            [
                [
                    overlap["data_vocabulary"],
                    overlap["seed_vocabulary"],
                    f"{100 * overlap['data_in_seeds']:.1f}%",
                    f"{100 * overlap['seeds_in_data']:.1f}%",
                ]
            ],
        )
        if overlap
        else "<p class=sub>(seeds not readable from here: no overlap figure)</p>"
    )
    scores = figures.get("scores") or {}
    return (
        f"<h2 id=quality>Quality, diversity, complexity</h2><p class=sub>{note} Distinct-n: unique n-grams over all "
        "n-grams (higher is more diverse). Compression ratio: raw over gzip size (higher is more repetitive; ≈2–3 is "
        "typical prose).</p>"
        + _table(["text column", "distinct-1", "distinct-2", "distinct-3", "compression ratio"], rows)
        + "<h3>Duplicates</h3>"
        + _table(["", "rate"], dup_rows)
        + "<h3>Lengths (words and punctuation)</h3>"
        + _img(plots.histograms({n: f["lengths"] for n, f in fields.items()}, "tokens"), "length histograms")
        + ("<h3>Label and attribute balance</h3>" + _img(plots.balance(balance), "balance") if balance else "")
        + ("<h3>Scores</h3>" + _img(plots.histograms(scores, "value"), "score histograms") if scores else "")
        + "<h3>Vocabulary overlap with the seeds</h3>"
        + overlap_html
        + _semantic_section(figures.get("semantic"))
    )


def _semantic_section(semantic: dict[str, Any] | None) -> str:
    """Diversity by meaning (rayjobs/semantic.py): the figures, the map and the semantic duplicates found."""
    if not semantic:
        return ""
    html_ = (
        f"<h3 id=semantic>Semantic diversity</h3><p class=sub>{semantic.get('n', 0):,} kept rows embedded by "
        f"<code>{_e(semantic.get('model'))}</code> ({_e(', '.join(semantic.get('fields') or []))}). Mean cosine "
        "distance: 0 when every row says the same, about 1 for unrelated texts. Vendi score: the effective number "
        "of distinct rows (1 to n). Clusters: average-linkage clusters within the stated cosine distance.</p>"
    )
    if "vendi_score" in semantic:
        html_ += _table(
            ["mean cosine distance", "Vendi score", "clusters", "cluster-size entropy (normalised)", "largest"],
            [
                [
                    f"{semantic['mean_cosine_distance']:.3f}",
                    f"{semantic['vendi_score']:.1f} of {semantic['n']:,}",
                    f"{semantic['clusters']:,} (cosine distance ≤ {semantic['cluster_distance']})",
                    f"{semantic['cluster_entropy']:.3f} ({semantic['cluster_entropy_normalized']:.3f})",
                    ", ".join(map(str, semantic["largest_clusters"][:5])),
                ]
            ],
        )
    found = semantic.get("map")
    if found:
        colour = f", coloured by {_e(found['colour'])}" if found.get("colour") else ""
        html_ += f"<p class=sub>PCA map of {len(found['points']):,} rows{colour}.</p>" + _img(
            plots.semantic_map(found["points"], found.get("labels")), "semantic map"
        )
    duplicates = semantic.get("duplicates") or {}
    if duplicates.get("dropped"):
        counts = ", ".join(f"{step} {n:,}" for step, n in duplicates["dropped"].items())
        html_ += f"<h3>Semantic duplicates</h3><p class=sub>Dropped: {_e(counts)}.</p>"
        rows = [
            [d["id"], d["text"][:160], d["kept_id"], (d.get("kept_text") or "")[:160], d["reason"]]
            for d in duplicates["examples"]
        ]
        html_ += _table(["dropped row", "text", "kept row", "kept text", "why"], rows) if rows else ""
    return html_


def _card(row: dict[str, Any], fields: list[str], kind: str) -> str:
    tags = f"<span class=tag>seed {_e(row.get('seed_id'))}</span>"
    if kind == "rejected":
        tags += f"<span class='tag why'>{_e(row.get('rejected_by'))}: {_e(row.get('reject_reason'))}</span>"
    if kind == "errors":
        tags += f"<span class='tag why'>{_e(row.get('stage'))}: {_e(row.get('error'))}</span>"
    body = "".join(
        f"<div><b>{_e(f)}</b><pre>{_e(_shown(row[f]))}</pre></div>" for f in fields if row.get(f) is not None
    )
    step = _e(row.get("rejected_by", ""))
    return f"<div class='card {kind}' data-step='{step}'>{tags}{body}</div>"


def _shown(value: Any) -> str:
    """A field as a reader wants it in the sample browser: a conversation one ``speaker: text`` line per turn."""
    if is_messages(value):
        return "\n".join(f"{m.get('role') or '?'}: {m.get('content') or ''}" for m in value)
    return str(value)


def _browser(samples: dict[str, pa.Table | None], text_fields: list[str], steps: list[str]) -> str:
    kept = samples.get("data")
    rejected = samples.get("rejected")
    kept_cards = "".join(_card(r, text_fields, "kept") for r in (kept.to_pylist() if kept is not None else []))
    rejected_rows = rejected.to_pylist() if rejected is not None else []
    steps = [*dict.fromkeys([*(str(r["rejected_by"]) for r in rejected_rows), *steps])]
    options = "<option value=''>all filters</option>" + "".join(f"<option>{_e(s)}</option>" for s in steps)
    rejected_cards = "".join(_card(r, text_fields, "rejected") for r in rejected_rows)
    errors = samples.get("errors")
    error_cards = "".join(_card(r, ["seed"], "errors") for r in (errors.to_pylist() if errors is not None else []))
    return (
        "<h2 id=samples>Samples</h2><div class=side>"
        f"<div><h3>Kept</h3>{kept_cards or '<p class=sub>(none)</p>'}</div>"
        f"<div id=rejected><h3>Rejected</h3><label>filter <select id=reject-filter>{options}</select></label>"
        f"{rejected_cards or '<p class=sub>(none)</p>'}</div></div>"
        f"<h3>Errors</h3>{error_cards or '<p class=sub>(none)</p>'}"
    )


def _roles_section(summary: dict[str, Any]) -> str:
    """Calls, tokens, errors, retries, time and cost per role (generator, judge, critic...)."""
    figures = summary.get("roles") or {}
    if not figures:
        return ""
    rate = summary.get("position_consistency_rate")
    note = f"<p>position-consistent pairs: {rate:.1%}</p>" if rate is not None else ""
    if summary.get("target_failure_rate") is not None:
        note += f"<p>instructions the target failed: {summary['target_failure_rate']:.1%}</p>"
    if summary.get("cache"):
        note += f"<p id=cache>{cache_line(summary['cache'])}</p>"
    if summary.get("cascade"):
        note += f"<p id=cascade>{cascade_line(summary['cascade'])}</p>"
    return f"<h2 id=roles>Models by role</h2>{_table(list(ROLE_COLUMNS), role_rows(figures))}{note}"


def _evaluation_section(figures: dict[str, Any] | None, anchor: str, title: str) -> str:
    """Gold figures: the headline, the confusion matrix, the reliability curve, absent ids and disagreements."""
    if not figures:
        return ""
    html_ = f"<h2 id={anchor}>{_e(title)} <span class=sub>({_e(figures.get('gold_file', ''))})</span></h2>"
    html_ += f"<p>{_e(evaluation_line(figures))}; coverage in data/ {figures['coverage_data']:.1%}, in rejected/ "
    html_ += f"{figures['coverage_rejected']:.1%}</p>"
    confusion = figures.get("confusion")
    if confusion:
        head = ["gold \\ predicted", *confusion["labels"]]
        rows = [[label, *counts] for label, counts in zip(confusion["labels"], confusion["matrix"], strict=True)]
        html_ += f"<h3>Confusion matrix</h3>{_table(head, rows)}"
    if figures.get("reliability"):
        html_ += f"<h3>Reliability</h3>{_img(plots.reliability(figures['reliability']), 'reliability curve')}"
    absent = figures.get("absent") or {}
    if absent.get("count"):
        html_ += f"<p>gold ids with no output row ({absent['count']:,}): {_e(', '.join(absent['first']))}</p>"
    wrong = figures.get("disagreements") or {}
    if wrong.get("count"):
        rows = [[w["id"], w["gold"], w["predicted"], w["confidence"]] for w in wrong["first"]]
        html_ += f"<h3>Disagreements ({wrong['count']:,}, first {len(rows)})</h3>"
        html_ += _table(["id", "gold", "predicted", "confidence"], rows)
    return html_


def _student_vs_llm(compared: dict[str, Any] | None) -> str:
    """A run labelled by a student: its time beside what the LLM took for as many rows."""
    if not compared:
        return ""
    return (
        f"<h2 id=student-vs-llm>Student against the LLM</h2><p>{compared['rows']:,} rows labelled by the student in "
        f"{compared['student_s']:.1f} s; the LLM took {compared['llm_s']:.1f} s for as many rows in "
        f"<code>{_e(compared['llm_run'])}</code> ({compared['speedup']}× faster)</p>"
    )


def _student_section(student: dict[str, Any] | None) -> str:
    """The distilled student: agreement with the LLM, label issues with examples, its own gold figures."""
    if not student:
        return ""
    html_ = (
        f"<h2 id=student>Student <span class=sub>({_e(student['model'])})</span></h2><p>{_e(student_line(student))}</p>"
    )
    issues = student.get("examples") or []
    if issues:
        rows = [[i["id"], i["text"][:160], i["label"], i["student_label"], i["label_quality"]] for i in issues]
        html_ += _table(["id", "text", "LLM label", "student label", "label quality"], rows)
    html_ += _evaluation_section(student.get("evaluation"), "student-evaluation", "Student against gold")
    return html_


def render_report(
    record: dict[str, Any], figures: dict[str, Any], samples: dict[str, pa.Table | None], reasons: dict[str, dict]
) -> str:
    run, summary = record["run"], record["summary"]
    text_fields = list(run.get("text_fields") or [])
    throughput = plots.throughput(summary.get("generation") or [], summary.get("timeline") or [])
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>synthray run {_e(run["name"])}</title>
<meta name=viewport content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>
<h1>synthray run <code>{_e(run["name"])}</code></h1>
<p class=sub>recipe <b>{_e(run["recipe"])}</b> · model <b>{_e(run["model"])}</b> · output <code>{_e(run["uri"])}</code>
· finished {_e(record.get("finished_at", ""))}</p>
{_tiles(summary, run)}
{_funnel_section(summary, reasons.get("rejected", {}), reasons.get("errors", {}))}
{_source_section(record)}
{_roles_section(summary)}
{_evaluation_section(record.get("evaluation"), "evaluation", "Against gold")}
{_student_section(record.get("student"))}
{_student_vs_llm(summary.get("student_vs_llm"))}
<h2 id=throughput>Throughput</h2>{_img(throughput, "throughput over time")}
{_quality_section(figures, summary.get("balance") or {})}
{_browser(samples, text_fields, [f["step"] for f in summary.get("filters") or []])}
<script>{_SCRIPT}</script>
</body></html>"""


def _examples(tables: dict[str, pa.Table | None]) -> dict[str, pa.Table | None]:
    """From the rows read for the figures: a few kept rows, up to EXAMPLES rejected rows per filter, a few errors."""
    kept, rejected, errors = tables["data"], tables["rejected"], tables["errors"]
    if rejected is not None:
        per_step: dict[str, int] = {}
        keep = []
        for i, step in enumerate(rejected["rejected_by"].to_pylist()):
            per_step[step] = per_step.get(step, 0) + 1
            if per_step[step] <= EXAMPLES:
                keep.append(i)
        rejected = rejected.take(keep)
    return {
        "data": kept.slice(0, EXAMPLES) if kept is not None else None,
        "rejected": rejected,
        "errors": errors.slice(0, 8) if errors is not None else None,
    }


def sample_seeds(source: dict[str, Any], limit: int = quality.SAMPLE_ROWS) -> list[str] | None:
    """Up to ``limit`` seed rows as JSON, or None when the source cannot be read from here (a rebuild elsewhere)."""
    try:
        return [seed for _, seed, error in itertools.islice(iter_seeds(source), limit) if not error]
    except (OSError, ValueError) as exc:
        log.warning("seeds not readable for the vocabulary overlap (%s): left out of the report", exc)
        return None


def write_report(
    sink: Sink,
    record: dict[str, Any],
    seeds: list[str] | None,
    semantic: Callable[[dict[str, pa.Table | None]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write report.html and README.md (the dataset card) for the run ``record`` describes; returns the headline
    quality figures for run.json. Without ``seeds``, a seed overlap the record already holds is kept; without
    ``semantic`` (the encoder's figures of the tables read here), the semantic figures it holds."""
    text_fields = list(record["run"].get("text_fields") or [])
    # Each output directory is read once (its first SAMPLE_ROWS rows) for the figures, the reasons and the examples.
    tables = {kind: sink.read_kind(kind, limit=quality.SAMPLE_ROWS) for kind in ("data", "rejected", "errors")}
    figures = quality.figures(tables["data"], text_fields, record["summary"], seeds)
    earlier = record.get("quality") or {}
    if figures.get("seed_overlap") is None:
        figures["seed_overlap"] = earlier.get("seed_overlap")
    figures["semantic"] = semantic(tables) if semantic is not None else earlier.get("semantic")
    reasons = {
        "rejected": quality.reason_counts(tables["rejected"], "rejected_by", "reject_reason"),
        "errors": quality.reason_counts(tables["errors"], "stage", "error"),
    }
    sink.write_text("report.html", render_report(record, figures, _examples(tables), reasons))
    headline = quality.headline(figures)
    # The card quotes these figures: a run's first card has no run.json figures to read them from yet.
    sink.write_text("README.md", render_card({**record, "quality": headline}))
    return headline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild report.html and README.md of a synthray output.")
    parser.add_argument("uri", help="the run's sink.uri: a local directory or s3://bucket/prefix")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (credentials come from the environment)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sink = Sink(args.uri, {"endpoint_url": args.endpoint_url} if args.endpoint_url else {})
    if not sink.exists("run.json"):
        raise SystemExit(f"{args.uri} holds no run.json: not a finished synthray output")
    record = json.loads(sink.read_text("run.json"))
    record["quality"] = write_report(sink, record, sample_seeds(record["config"]["source"]))
    sink.write_text("run.json", json.dumps(record, indent=2, default=str))
    print(f"rebuilt {sink.uri}/report.html and {sink.uri}/README.md")


if __name__ == "__main__":
    main()
