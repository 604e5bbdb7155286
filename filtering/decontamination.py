"""Decontamination: drop samples sharing a word n-gram (13 by default) with a benchmark the user names.

The 13-gram overlap test follows GPT-3's contamination analysis (Brown et al., 2020) and common practice since.
Benchmarks are JSONL or Parquet files (local or s3://) with the text fields to index; the reason names the matched
benchmark. Each filter worker builds the n-gram index once, when the stage starts. A text shorter than n words is
one n-gram: a sample that is a short benchmark item (up to case and punctuation) is caught too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import chain
from typing import Any

import fsspec
import numpy as np
import pyarrow.parquet as pq

from filtering import textstats
from filtering.base import Filter, Verdict


def _rows(path: str, storage_options: dict) -> list[dict]:
    with fsspec.open(path, "rb", **storage_options) as f:
        if path.endswith(".parquet"):
            return pq.read_table(f).to_pylist()
        return [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]


class DecontaminationFilter(Filter):
    """Args:
    benchmarks: list of {name, path, fields}: files to index and which of their fields hold benchmark text.
    n: words per n-gram (13 as in GPT-3's analysis).
    fields: sample text columns to check; defaults to the recipe's text fields.
    storage_options: fsspec options for s3:// benchmark paths.
    """

    name = "decontamination"

    def __init__(
        self,
        benchmarks: Sequence[dict[str, Any]],
        n: int = 13,
        fields: Sequence[str] | None = None,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__(fields)
        if not benchmarks:
            raise ValueError("decontamination needs benchmarks: a list of {name, path, fields}")
        self.n = n
        self.names: list[str] = []
        hashes, owners = [], []
        for bench in benchmarks:
            missing = sorted({"path", "fields"} - set(bench))
            if missing:
                raise ValueError(f"decontamination benchmark {bench!r} lacks {missing}")
            name = bench.get("name") or bench["path"]
            try:
                rows = _rows(bench["path"], dict(storage_options or {}))
            except (OSError, ValueError) as exc:
                raise ValueError(f"decontamination benchmark {name!r}: cannot read {bench['path']}: {exc}") from exc
            texts = [str(row.get(field) or "") for row in rows for field in bench["fields"]]
            grams, _ = textstats.word_shingles(texts, n)
            hashes.append(grams)
            owners.append(np.full(len(grams), len(self.names)))
            self.names.append(name)
        self.index = textstats.HashTable(np.concatenate(hashes), np.concatenate(owners))

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        per_row = [[text for _, text in self.texts(row)] for row in rows]  # fields apart: no n-gram spans two
        shingles = textstats.word_shingles(list(chain.from_iterable(per_row)), self.n)
        hits = iter(self.index.first_hits(*shingles).tolist())
        verdicts = []
        for texts in per_row:
            found = [hit for hit in (next(hits) for _ in texts) if hit >= 0]
            verdicts.append((False, f"contaminated:{self.names[found[0]]}") if found else (True, None))
        return verdicts
