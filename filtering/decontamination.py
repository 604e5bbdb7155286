"""Decontamination: drop samples sharing a word n-gram (13 by default) with a benchmark the user names.

The 13-gram overlap test follows GPT-3's contamination analysis (Brown et al., 2020) and common practice since.
Benchmarks are JSONL or Parquet files (local or s3://) with the text fields to index; the reason names the matched
benchmark. Each filter worker builds the n-gram index once, when the stage starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import fsspec
import pyarrow.parquet as pq

from filtering.base import Filter, Verdict
from filtering.exact_dedup import normalize


def ngram_hashes(text: str, n: int) -> set[int]:
    words = normalize(text).split()
    return {
        int.from_bytes(hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).digest(), "little")
        for i in range(len(words) - n + 1)
    }


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
        self.index: dict[int, str] = {}
        for bench in benchmarks:
            missing = sorted({"path", "fields"} - set(bench))
            if missing:
                raise ValueError(f"decontamination benchmark {bench!r} lacks {missing}")
            name = bench.get("name") or bench["path"]
            try:
                rows = _rows(bench["path"], dict(storage_options or {}))
            except (OSError, ValueError) as exc:
                raise ValueError(f"decontamination benchmark {name!r}: cannot read {bench['path']}: {exc}") from exc
            for row in rows:
                for field in bench["fields"]:
                    for h in ngram_hashes(str(row.get(field) or ""), n):
                        self.index.setdefault(h, name)

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        for _, text in self.texts(row):
            for h in ngram_hashes(text, self.n):
                if h in self.index:
                    return False, f"contaminated:{self.index[h]}"
        return True
