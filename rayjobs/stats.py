"""Run counters the driver builds from the writer's manifest rows as they stream in."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class RunStats:
    started: float = field(default_factory=time.time)
    finished: float | None = None
    rows: Counter = field(default_factory=Counter)  # data / rejected / errors
    rejected_by: Counter = field(default_factory=Counter)
    errors_by_stage: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Seeds with at least one row; commits (and a batch's manifest rows) never share a seed, so a count suffices.
    seeds: int = 0
    # Recipe label/attribute column → value → kept rows: how balanced the dataset is.
    balance: dict[str, Counter] = field(default_factory=dict)
    # Recipe column → value → samples (kept or rejected): rates over every sample the recipe made.
    tallies: dict[str, Counter] = field(default_factory=dict)
    # Role → calls, tokens, errors, retries, seconds of the calls booked on committed rows.
    roles: dict[str, Counter] = field(default_factory=dict)
    shards: int = 0
    # (seconds since start, cumulative completion tokens, cumulative rows): the throughput curve of the report.
    timeline: list[tuple[float, int, int]] = field(default_factory=list)

    def add_shards(self, shards: list[dict[str, Any]], seed_ids: list[str]) -> None:
        """Count committed shards (as summarised in a commit record) and the seeds they account for."""
        self.seeds += len(seed_ids)
        for shard in shards:
            kind = shard["kind"]
            self.rows[kind] += shard["rows"]
            self.shards += 1
            self.prompt_tokens += shard["prompt_tokens"]
            self.completion_tokens += shard["completion_tokens"]
            counter = {"rejected": self.rejected_by, "errors": self.errors_by_stage}.get(kind)
            if counter is not None:
                counter.update(shard["reasons"])
            for column, counts in shard["balance"].items():
                self.balance.setdefault(column, Counter()).update(counts)
            for column, counts in (shard.get("tallies") or {}).items():  # records before tallies existed lack them
                self.tallies.setdefault(column, Counter()).update(counts)
            for role, figures in (shard.get("roles") or {}).items():
                self.roles.setdefault(role, Counter()).update(figures)

    def add_manifest(self, manifest: pa.Table) -> None:
        """Progress as the writer's manifest rows stream in (the totals of record come from the commits)."""
        for entry in manifest.to_pylist():
            shard = {
                **entry,
                **{key: json.loads(entry[key] or "{}") for key in ("reasons", "balance", "tallies", "roles")},
            }
            self.add_shards([shard], entry["seed_ids"])
        self.timeline.append((time.time() - self.started, self.completion_tokens, sum(self.rows.values())))

    @classmethod
    def from_commits(cls, commits: list[Any], progress: RunStats) -> RunStats:
        """Totals from every committed record (this attempt's and earlier ones'), timing from this attempt."""
        stats = cls(started=progress.started, finished=progress.finished, timeline=progress.timeline)
        for commit in commits:
            stats.add_shards(commit.shards, commit.seed_ids)
        return stats

    def filter_funnel(self, steps: list[str], seconds: dict[str, float]) -> list[dict[str, Any]]:
        """Per filter step, in order: rows seen, kept, dropped and time. Rows reach the filters with status ok;
        each step sees what the previous one kept, so seen = kept + dropped holds at every step."""
        seen = self.rows["data"] + sum(self.rejected_by[s] for s in steps)
        funnel = []
        for step in steps:
            dropped = self.rejected_by[step]
            spent = seconds.get(step, 0.0)
            funnel.append(
                {
                    "step": step,
                    "seen": seen,
                    "kept": seen - dropped,
                    "dropped": dropped,
                    "seconds": round(spent, 6),
                    "rows_per_s": round(seen / spent, 1) if spent > 0 else None,
                }
            )
            seen -= dropped
        return funnel

    def finish(self) -> None:
        self.finished = time.time()

    @property
    def wall_s(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def generated(self) -> int:
        """Samples the recipe produced (kept or rejected by a filter); errors are not samples."""
        return self.rows["data"] + self.rows["rejected"]

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self, seeds_read: int) -> dict[str, Any]:
        return {
            "seeds_read": seeds_read,
            "seeds_accounted": self.seeds,
            "generated": self.generated,
            "kept": self.rows["data"],
            "rejected": self.rows["rejected"],
            "errors": self.rows["errors"],
            "rejected_by": dict(self.rejected_by),
            "errors_by_stage": dict(self.errors_by_stage),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_s": round(self.wall_s, 3),
            "completion_tokens_per_s": round(self.tokens_per_s, 2),
            "shards": self.shards,
            "balance": {column: dict(counts.most_common()) for column, counts in self.balance.items()},
            "tallies": {column: dict(counts.most_common()) for column, counts in self.tallies.items()},
            "timeline": [[round(t, 2), tok, rows] for t, tok, rows in self.timeline],
        }
