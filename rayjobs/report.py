"""The run report (self-contained report.html) and the dataset card (README.md) written into the sink."""

from __future__ import annotations

import html
import json
from typing import Any

import pyarrow as pa

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}.bar{background:#4c78a8;height:14px}.num{text-align:right}
pre{white-space:pre-wrap;margin:0;max-height:12em;overflow:auto}h1{margin-bottom:0}.sub{color:#666}"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _funnel(summary: dict[str, Any]) -> str:
    stages = [("seeds read", summary["seeds_read"]), ("samples generated", summary["generated"])]
    stages += [(f"dropped by {name}", -n) for name, n in sorted(summary["rejected_by"].items())]
    stages += [("kept (data/)", summary["kept"]), ("errors (errors/)", summary["errors"])]
    top = max([abs(n) for _, n in stages] + [1])
    rows = "".join(
        f"<tr><td>{_e(label)}</td><td class=num>{abs(n):,}</td>"
        f"<td style='width:420px'><div class=bar style='width:{400 * abs(n) / top:.0f}px'></div></td></tr>"
        for label, n in stages
    )
    return f"<table><tr><th>stage</th><th>rows</th><th></th></tr>{rows}</table>"


def _filters(funnel: list[dict[str, Any]]) -> str:
    if not funnel:
        return ""
    rows = "".join(
        f"<tr><td>{_e(f['step'])}</td><td class=num>{f['seen']:,}</td><td class=num>{f['kept']:,}</td>"
        f"<td class=num>{f['dropped']:,}</td><td class=num>{f['seconds']:.3f}</td></tr>"
        for f in funnel
    )
    head = "<tr><th>filter</th><th>seen</th><th>kept</th><th>dropped</th><th>seconds</th></tr>"
    return f"<h2>Filters</h2><table>{head}{rows}</table>"


def _balance(balance: dict[str, dict[str, int]]) -> str:
    if not balance:
        return ""
    parts = []
    for column, counts in balance.items():
        total = sum(counts.values()) or 1
        rows = "".join(
            f"<tr><td>{_e(v)}</td><td class=num>{n:,}</td><td class=num>{100 * n / total:.1f}%</td></tr>"
            for v, n in counts.items()
        )
        parts.append(
            f"<h3>{_e(column)}</h3><table><tr><th>value</th><th>kept rows</th><th>share</th></tr>{rows}</table>"
        )
    return "<h2>Label and attribute balance</h2>" + "".join(parts)


def _throughput_svg(timeline: list[list[float]]) -> str:
    if len(timeline) < 2:
        return "<p class=sub>(too few shards for a throughput curve)</p>"
    w, h = 640, 180
    t_max = max(p[0] for p in timeline) or 1
    tok_max = max(p[1] for p in timeline) or 1
    pts = " ".join(f"{40 + (w - 50) * t / t_max:.1f},{h - 25 - (h - 40) * tok / tok_max:.1f}" for t, tok, _ in timeline)
    return (
        f"<svg width={w} height={h} role=img aria-label='cumulative completion tokens over time'>"
        f"<polyline fill=none stroke='#4c78a8' stroke-width=2 points='{pts}'/>"
        f"<line x1=40 y1={h - 25} x2={w - 10} y2={h - 25} stroke='#888'/>"
        f"<line x1=40 y1=10 x2=40 y2={h - 25} stroke='#888'/>"
        f"<text x=42 y=20 font-size=11>{tok_max:,} tokens</text>"
        f"<text x={w - 60} y={h - 8} font-size=11>{t_max:.0f} s</text></svg>"
    )


def _examples(table: pa.Table | None, columns: list[str]) -> str:
    if table is None or table.num_rows == 0:
        return "<p class=sub>(none)</p>"
    present = [c for c in columns if c in table.column_names]
    head = "".join(f"<th>{_e(c)}</th>" for c in present)
    body = "".join(
        "<tr>" + "".join(f"<td><pre>{_e(row[c])}</pre></td>" for c in present) + "</tr>"
        for row in table.select(present).to_pylist()
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(
    summary: dict[str, Any], run: dict[str, Any], examples: dict[str, pa.Table | None], text_fields: list[str]
) -> str:
    kept_cols = ["seed_id", *text_fields, "completion_tokens"]
    tokens = (
        f"<table><tr><th>prompt tokens</th><th>completion tokens</th><th>wall time</th>"
        f"<th>completion tokens/s</th><th>engine replicas</th></tr><tr>"
        f"<td class=num>{summary['prompt_tokens']:,}</td><td class=num>{summary['completion_tokens']:,}</td>"
        f"<td class=num>{summary['wall_s']:.1f} s</td><td class=num>{summary['completion_tokens_per_s']:.1f}</td>"
        f"<td class=num>{_e(run['replicas'])}</td></tr></table>"
    )
    errors = "".join(
        f"<tr><td>{_e(k)}</td><td class=num>{v:,}</td></tr>" for k, v in sorted(summary["errors_by_stage"].items())
    )
    return f"""<!doctype html><html><head><meta charset=utf-8><title>synthray run {_e(run["name"])}</title>
<style>{_CSS}</style></head><body>
<h1>synthray run <code>{_e(run["name"])}</code></h1>
<p class=sub>recipe <b>{_e(run["recipe"])}</b> · model <b>{_e(run["model"])}</b> ·
output <code>{_e(run["uri"])}</code></p>
<h2>Funnel</h2>{_funnel(summary)}
{_filters(summary.get("filters") or [])}
{_balance(summary.get("balance") or {})}
<h2>Errors by stage</h2>{f"<table>{errors}</table>" if errors else "<p class=sub>(no errors)</p>"}
<h2>Tokens and throughput</h2>{tokens}{_throughput_svg(summary["timeline"])}
<h2>Kept examples</h2>{_examples(examples.get("data"), kept_cols)}
<h2>Rejected examples</h2>{_examples(examples.get("rejected"), [*kept_cols[:-1], "rejected_by", "reject_reason"])}
<h2>Error examples</h2>{_examples(examples.get("errors"), ["seed_id", "stage", "error"])}
</body></html>"""


def render_card(summary: dict[str, Any], run: dict[str, Any], config: dict[str, Any]) -> str:
    filters = ", ".join(config.get("filters") or {}) or "none"
    return f"""# {run["name"]}

Synthetic dataset generated by synthray.

| | |
|---|---|
| recipe | `{run["recipe"]}` |
| model | `{run["model"]}` (license: {config["model"].get("license", "see the model card")}) |
| sampling | `{json.dumps(config["model"].get("sampling", {}))}` |
| filters | {filters} |
| seeds read | {summary["seeds_read"]:,} |
| kept / rejected / errors | {summary["kept"]:,} / {summary["rejected"]:,} / {summary["errors"]:,} |

Accepted samples are in `data/*.parquet`; `rejected/` holds filtered samples with `rejected_by` and
`reject_reason`; `errors/` holds failed seeds or samples with `stage` and `error`. `run.json` has the resolved
config and counters, `report.html` the run report.

```python
import pandas as pd
df = pd.read_parquet("{run["uri"]}/data/")
```
"""
