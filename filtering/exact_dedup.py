"""Global exact dedup on normalised text; first seen wins, state lives in actors sharded by hash."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import ray

from filtering.base import Filter, Verdict

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces: case, punctuation and spacing never make a sample new."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def text_hash(texts: Sequence[str]) -> int:
    digest = hashlib.blake2b("\x1f".join(normalize(t) for t in texts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@ray.remote(num_cpus=0)
class DedupShard:
    """One shard of the set of hashes seen so far, across all workers of a run."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def check_and_add(self, hashes: list[int]) -> list[bool]:
        """For each hash, whether it was new; every hash is recorded, so a later copy in the same call is a dup."""
        fresh = []
        for h in hashes:
            fresh.append(h not in self._seen)
            self._seen.add(h)
        return fresh


def start_shards(num_shards: int) -> list[ray.actor.ActorHandle]:
    """Start the shard actors for one dedup filter; the pipeline hands the same handles to every filter worker."""
    if num_shards < 1:
        raise ValueError(f"exact_dedup.num_shards must be >= 1, got {num_shards}")
    return [DedupShard.remote() for _ in range(num_shards)]


def any_seen(shards: Sequence[Any], keys_per_row: list[list[int]]) -> list[bool]:
    """For each row, whether any of its keys was recorded earlier in the run, by any worker.

    Keys go to the shard ``key % len(shards)``, one call per shard, rows in order: a later copy in the same batch
    sees the earlier one. Every key is recorded, so the first occurrence wins.
    """
    if not shards:
        raise RuntimeError("a dedup step has no shard actors: the pipeline must start them first")
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for i, keys in enumerate(keys_per_row):
        for key in keys:
            by_shard.setdefault(key % len(shards), []).append((i, key))
    refs = {s: shards[s].check_and_add.remote([k for _, k in pairs]) for s, pairs in by_shard.items()}
    seen = [False] * len(keys_per_row)
    for s, pairs in by_shard.items():
        for (i, _), fresh in zip(pairs, ray.get(refs[s]), strict=True):
            seen[i] = seen[i] or not fresh
    return seen


class ShardedDedup(Filter):
    """Base of the dedup steps: their state is a set of keys spread over shard actors."""

    def __init__(self, fields: Sequence[str] | None = None, shards: Sequence[Any] | None = None) -> None:
        super().__init__(fields)
        self.shards = list(shards or [])

    @staticmethod
    def start_state(num_shards: int = 2, **_: Any) -> list:
        """The shard actors holding this step's keys; the pipeline hands them to every filter worker."""
        return start_shards(int(num_shards))


class ExactDedupFilter(ShardedDedup):
    """Drops a sample whose normalised text fields equal those of a sample seen earlier anywhere in the run.

    Args:
        fields: columns whose joined normalised text is compared; defaults to the recipe's text fields.
        num_shards: number of shard actors holding the seen hashes (set by the pipeline).
        shards: the shard actor handles (set by the pipeline, not by config).
    """

    name = "exact_dedup"

    def __init__(
        self, fields: Sequence[str] | None = None, num_shards: int = 2, shards: Sequence[Any] | None = None
    ) -> None:
        super().__init__(fields, shards)
        self.num_shards = num_shards

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        seen = any_seen(self.shards, [[text_hash([text for _, text in self.texts(row)])] for row in rows])
        return [(False, "duplicate") if dup else (True, None) for dup in seen]
