"""Quality, diversity and complexity figures of a dataset's kept rows, for the run report and run.json.

The measures are the common ones of the synthetic-data literature (the QDC survey among the seed papers):
distinct-n (unique n-grams over all n-grams), compression-ratio diversity (raw bytes over gzip bytes: higher means
more repetitive), duplicate rates, token lengths, label balance, score distributions and vocabulary overlap with the
seeds. They are computed on at most ``SAMPLE_ROWS`` rows, which the report says.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from filtering.base import as_text

SAMPLE_ROWS = 20_000
# Lower-cased words and single punctuation marks: a tokenizer-free stand-in for model tokens, stable across models.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_DIGITS = re.compile(r"\d+")
# Recipe or filter columns that are numbers but not scores: lineage and token counts.
_NOT_SCORES = {"sample_index", "prompt_tokens", "completion_tokens"}


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(token_lists: Iterable[list[str]], n: int) -> float:
    """Unique n-grams over all n-grams of the texts (0 when there are none)."""
    grams: set[tuple[str, ...]] = set()
    total = 0
    for toks in token_lists:
        for i in range(len(toks) - n + 1):
            grams.add(tuple(toks[i : i + n]))
            total += 1
    return len(grams) / total if total else 0.0


def compression_ratio(texts: list[str]) -> float:
    """Bytes of the texts joined by newlines over their gzip size: 1–2 for varied text, higher when repetitive."""
    raw = "\n".join(texts).encode()
    return len(raw) / len(gzip.compress(raw, compresslevel=6)) if raw else 0.0


def duplicate_rate(texts: list[str]) -> float:
    """Share of texts that exactly repeat an earlier one (after collapsing whitespace and case)."""
    if not texts:
        return 0.0
    normal = [" ".join(t.lower().split()) for t in texts]
    return 1 - len(set(normal)) / len(normal)


def seed_texts(seeds: Iterable[str]) -> list[str]:
    """The string values of seed JSON rows (their text, whatever the columns are called)."""
    texts = []
    for seed in seeds:
        try:
            row = json.loads(seed)
        except ValueError:
            continue
        if isinstance(row, dict):
            texts.extend(v for k, v in row.items() if isinstance(v, str) and k != "id")
    return texts


def vocabulary_overlap(texts: list[str], seeds: list[str]) -> dict[str, float]:
    """Share of the dataset's vocabulary found in the seeds' and of the seeds' found in the dataset's."""
    data_vocab = {t for text in texts for t in tokens(text) if t.isalnum()}
    seed_vocab = {t for text in seeds for t in tokens(text) if t.isalnum()}
    shared = len(data_vocab & seed_vocab)
    return {
        "data_vocabulary": len(data_vocab),
        "seed_vocabulary": len(seed_vocab),
        "data_in_seeds": round(shared / len(data_vocab), 4) if data_vocab else 0.0,
        "seeds_in_data": round(shared / len(seed_vocab), 4) if seed_vocab else 0.0,
    }


def score_columns(table: pa.Table) -> list[str]:
    """Numeric recipe or filter columns (judge scores, label confidence, classifier scores)."""
    return [
        f.name
        for f in table.schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)) and f.name not in _NOT_SCORES
    ]


def reason_counts(table: pa.Table | None, by: str, reason: str, top: int = 5) -> dict[str, list[list[Any]]]:
    """Per value of ``by`` (a filter, an error stage), its most common reasons, digits folded so that
    "3 words < 5" and "4 words < 5" count as one reason."""
    if table is None or table.num_rows == 0:
        return {}
    counts: dict[str, Counter] = {}
    for key, text in zip(table[by].to_pylist(), table[reason].to_pylist(), strict=True):
        folded = _DIGITS.sub("N", str(text or ""))[:160]
        counts.setdefault(str(key), Counter())[folded] += 1
    return {key: [[r, n] for r, n in c.most_common(top)] for key, c in sorted(counts.items())}


def dedup_rates(summary: dict[str, Any]) -> dict[str, float] | None:
    """Duplicates the dedup steps found among the rows they saw (before) — the rate after is measured on the kept
    rows. None when no dedup step ran."""
    steps = [f for f in summary.get("filters") or [] if "dedup" in f["step"]]
    if not steps:
        return None
    seen = steps[0]["seen"]
    dropped = sum(f["dropped"] for f in steps)
    return {"seen": seen, "dropped": dropped, "before": round(dropped / seen, 4) if seen else 0.0}


def text_of(table: pa.Table, field: str) -> list[str]:
    """The non-empty texts of a column, read as the filters read them (a conversation as its turns' contents)."""
    column = table[field]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [v for v in column.to_pylist() if v]
    return [text for text in map(as_text, column.to_pylist()) if text]


def figures(
    kept: pa.Table | None, text_fields: list[str], summary: dict[str, Any], seeds: list[str] | None
) -> dict[str, Any]:
    """All figures of the kept rows as plain JSON values (the plots are drawn from these)."""
    rows = kept.num_rows if kept is not None else 0
    result: dict[str, Any] = {"sample_rows": rows, "kept_rows": summary.get("kept", rows), "fields": {}}
    dedup = dedup_rates(summary)
    if kept is None or rows == 0:
        result["dedup"] = dedup
        return result
    fields = [f for f in text_fields if f in kept.column_names]
    all_texts = []
    for field in fields:
        texts = text_of(kept, field)
        all_texts.extend(texts)
        toks = [tokens(t) for t in texts]
        result["fields"][field] = {
            "distinct_1": round(distinct_n(toks, 1), 4),
            "distinct_2": round(distinct_n(toks, 2), 4),
            "distinct_3": round(distinct_n(toks, 3), 4),
            "compression_ratio": round(compression_ratio(texts), 3),
            "lengths": [len(t) for t in toks],
        }
    columns = [kept[f].to_pylist() for f in fields]
    joined = [" ".join(map(as_text, values)) for values in zip(*columns, strict=True)]
    if dedup is not None:
        dedup["after"] = round(duplicate_rate(joined), 4)
    result["dedup"] = dedup or {"after": round(duplicate_rate(joined), 4)}
    result["scores"] = {c: [v for v in kept[c].to_pylist() if v is not None] for c in score_columns(kept)}
    result["seed_overlap"] = vocabulary_overlap(all_texts, seed_texts(seeds)) if seeds else None
    return result


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures without per-row lists: what run.json keeps."""
    fields = {name: {k: v for k, v in f.items() if k != "lengths"} for name, f in figures["fields"].items()}
    for name, f in figures["fields"].items():
        lengths = sorted(f["lengths"])
        if lengths:
            fields[name]["tokens_median"] = lengths[len(lengths) // 2]
            fields[name]["tokens_p95"] = lengths[min(len(lengths) - 1, int(len(lengths) * 0.95))]
    return {
        "sample_rows": figures["sample_rows"],
        "fields": fields,
        "dedup": figures.get("dedup"),
        "seed_overlap": figures.get("seed_overlap"),
        **({"semantic": figures["semantic"]} if figures.get("semantic") else {}),
    }
