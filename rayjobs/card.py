"""The dataset card (README.md in the sink): what was generated, how, how much survived, and how to load it.

The front matter follows the Hugging Face dataset-card format, so the output directory pushed to the Hub as-is
loads with ``load_dataset(repo)``; the loading snippets below it are run by the tests.
"""

from __future__ import annotations

import json
from typing import Any

from rayjobs.cache import cache_line
from rayjobs.engines import ROLE_COLUMNS, cascade_line, role_rows
from rayjobs.evaluation import evaluation_line, student_line


def _settings(section: dict[str, Any]) -> str:
    """The short settings of a section (prompts and other long texts are in run.json)."""
    short = {k: v for k, v in section.items() if k != "name" and not (isinstance(v, str) and len(v) > 60)}
    short = {k: v for k, v in short.items() if not isinstance(v, (dict, list)) or len(json.dumps(v, default=str)) <= 80}
    return f"`{json.dumps(short, default=str)}`" if short else ""


def _filters(config: dict[str, Any]) -> str:
    steps = config.get("filters") or {}
    if not steps:
        return "none"
    return "<br>".join(f"`{name}` {json.dumps(params, default=str)}" for name, params in steps.items())


def _loading(uri: str) -> str:
    data = f"{uri}/data"
    if uri.startswith("s3://"):
        return f"""```python
from datasets import load_dataset
ds = load_dataset("parquet", data_files="{data}/*.parquet", split="train", storage_options={{"anon": False}})
```

```python
import pandas as pd
df = pd.read_parquet("{data}/")  # s3fs reads AWS_* credentials (and AWS_ENDPOINT_URL) from the environment
```

```python
import duckdb  # needs DuckDB's httpfs extension and the S3 settings of your store
duckdb.sql("CREATE SECRET (TYPE s3, PROVIDER credential_chain)")
print(duckdb.sql("SELECT count(*) FROM read_parquet('{data}/*.parquet')"))
```
"""
    return f"""```python
from datasets import load_dataset
ds = load_dataset("parquet", data_files="{data}/*.parquet", split="train")
```

```python
import pandas as pd
df = pd.read_parquet("{data}/")
```

```python
import duckdb
print(duckdb.sql("SELECT count(*) FROM read_parquet('{data}/*.parquet')"))
```
"""


def _quality(figures: dict[str, Any] | None) -> str:
    if not figures or not figures.get("fields"):
        return ""
    rows = "\n".join(
        f"| `{name}` | {f['distinct_1']:.3f} | {f['distinct_2']:.3f} | {f['distinct_3']:.3f} | "
        f"{f['compression_ratio']:.2f} | {f.get('tokens_median', '')} |"
        for name, f in figures["fields"].items()
    )
    dedup = figures.get("dedup") or {}
    after = f"{100 * dedup['after']:.2f}%" if "after" in dedup else "n/a"
    return f"""
## Quality figures (kept rows, first {figures["sample_rows"]:,})

| column | distinct-1 | distinct-2 | distinct-3 | compression ratio | median tokens |
|---|---|---|---|---|---|
{rows}

Exact duplicates among kept rows: {after}.{_semantic(figures.get("semantic"))} `report.html` has the plots, the
funnel and examples.
"""


def _semantic(semantic: dict[str, Any] | None) -> str:
    if not semantic or "vendi_score" not in semantic:
        return ""
    dropped = sum((semantic.get("duplicates") or {}).get("dropped", {}).values())
    return (
        f" Semantic diversity ({semantic['model']}, {semantic['n']:,} rows): mean cosine distance "
        f"{semantic['mean_cosine_distance']:.3f}, Vendi score {semantic['vendi_score']:.1f}, {semantic['clusters']:,} "
        f"clusters; semantic duplicates dropped: {dropped:,}."
    )


def _roles(summary: dict[str, Any]) -> str:
    figures = summary.get("roles") or {}
    if not figures:
        return ""
    rows = "".join("| " + " | ".join(str(c) for c in row) + " |\n" for row in role_rows(figures))
    head = "| " + " | ".join(ROLE_COLUMNS) + " |\n|" + "---|" * len(ROLE_COLUMNS) + "\n"
    cascade = f"\n{cascade_line(summary['cascade'])}\n" if summary.get("cascade") else ""
    cascade += f"\n{cache_line(summary['cache'])}.\n" if summary.get("cache") else ""
    return f"\n## Models by role\n\n{head}{rows}{cascade}"


def _annotation(record: dict[str, Any]) -> str:
    """The gold-set figures and the student's, when the run has them."""
    text = ""
    if record.get("evaluation"):
        text += f"\n## Evaluation against gold\n\n{evaluation_line(record['evaluation'])}.\n"
    student = record.get("student")
    if student:
        text += f"\n## Student ({student['model']})\n\n{student_line(student)}.\n"
        if student.get("evaluation"):
            text += f"\nStudent against gold: {evaluation_line(student['evaluation'])}.\n"
    return text


def render_card(record: dict[str, Any]) -> str:
    run, summary, config = record["run"], record["summary"], record["config"]
    model = config["model"]
    license_ = model.get("license") or "see the model card"
    rejected = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["rejected_by"].items())) or "none"
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["errors_by_stage"].items())) or "none"
    return f"""---
pretty_name: {run["name"]}
tags: [synthetic, synthray, {run["recipe"]}]
size_categories: [{_size_category(summary["kept"])}]
configs:
- config_name: default
  data_files: data/*.parquet
---

# {run["name"]}

Synthetic dataset generated by synthray with the `{run["recipe"]}` recipe.

| | |
|---|---|
| recipe | `{run["recipe"]}` {_settings(config["recipe"])} |
| model | `{run["model"]}` (`{model.get("source", "")}`) |
| model license | {license_} (the outputs of a model fall under its license's terms of use) |
| sampling | `{json.dumps(model.get("sampling") or {}, default=str)}` |
| filters (in order) | {_filters(config)} |
| seeds | {summary["seeds_read"]:,} |
| samples generated | {summary["generated"]:,} |
| kept (`data/`) | {summary["kept"]:,} |
| rejected (`rejected/`) | {summary["rejected"]:,} ({rejected}) |
| errors (`errors/`) | {summary["errors"]:,} ({errors}) |
| tokens | prompt {summary["prompt_tokens"]:,}, completion {summary["completion_tokens"]:,} |
| finished | {record.get("finished_at", "")} |
{_roles(summary)}{_annotation(record)}{_quality(record.get("quality"))}
## Layout

`data/*.parquet` holds the kept samples; `rejected/` the filtered ones with `rejected_by` and `reject_reason`;
`errors/` failed seeds or samples with `stage` and `error`. Every row has `id` (stable), `seed_id`,
`sample_index`, `recipe`, `model`, `prompt_tokens`, `completion_tokens` and `role_usage` (calls, tokens, errors,
retries and seconds per model role: generator, judge, critic...). `run.json` holds the resolved
config (secrets masked), counters and versions.

## Load it

{_loading(run["uri"])}"""


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "1M<n<10M" if rows < 10_000_000 else "n>10M"
