"""The commit protocol: every output row is committed exactly once, on local disk and on S3, across crashes and reruns.

S3 has no rename, so a shard is never made visible by moving it. Instead:

1. A writer puts each shard under a fresh unique key (``data/part-<uuid>.parquet``), then puts one commit record,
   ``_synthray/commits/<uuid>.json``, naming those shards and the seeds they cover. A single PUT is atomic on S3;
   on local disk the record is written beside its final name and renamed. A shard counts only once a record names
   it, so a crash at any instant leaves committed shards, or files nothing counts.
2. A rerun of the same command (same ``run.name`` and ``sink.uri``, same config) reads the records and skips the
   seeds they cover. ``_synthray/config.json``, written before any shard, holds the config's fingerprint: a different
   config on the same ``sink.uri`` is refused rather than mixed in.
3. Before ``_SUCCESS``, the driver reconciles: records are taken in the order they were written and the first
   record to cover a seed wins; rows of that seed in later records (a task Ray retried after its first attempt had
   already committed) are removed by rewriting those shards; then every shard no record names (an attempt that died
   before its record) is deleted. After ``_SUCCESS`` the data directories hold exactly the committed rows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from filtering.stage import compares_embeddings
from rayjobs.rows import KINDS, USAGE_KEYS

log = logging.getLogger("synthray")

SUCCESS = "_SUCCESS"
BOOKKEEPING = "_synthray"
CONFIG = f"{BOOKKEEPING}/config.json"
COMMITS = f"{BOOKKEEPING}/commits"
ARTIFACTS = f"{BOOKKEEPING}/artifacts"  # run-wide values as soon as they exist, so a resumed run reuses them

# The config keys whose change makes output incomparable; tuning (replicas, batch sizes, cluster) may change freely
# between attempts, and credentials are never part of a fingerprint.
_FINGERPRINT_KEYS = {
    "run": ("name", "seed", "corpus_sample"),
    "recipe": None,
    "filters": None,
    "source": ("kind", "uri", "dataset", "limit", "columns"),
    "model": ("name", "engine", "source", "sampling", "max_model_len", "echo"),
}


@dataclass
class Commit:
    """One commit record: the shards a writer made durable together and the seeds they account for."""

    name: str
    written_at: float
    seed_ids: list[str]
    shards: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"written_at": self.written_at, "seed_ids": self.seed_ids, "shards": self.shards})


def write_commit(
    sink: Any, shards: list[dict[str, Any]], seed_ids: list[str], written_at: float | None = None
) -> Commit:
    """Commit ``shards`` (already written) for ``seed_ids``: after this returns they count, before it they do not."""
    commit = Commit(f"{COMMITS}/{uuid.uuid4().hex}.json", written_at or time.time(), sorted(set(seed_ids)), shards)
    sink.write_atomic(commit.name, commit.to_json().encode("utf-8"))
    return commit


def load_commits(sink: Any) -> list[Commit]:
    """Every commit record under the sink, oldest first."""
    commits = []
    for path in sink.list(COMMITS, suffix=".json"):
        record = json.loads(sink.read_text(path))
        commits.append(Commit(path, float(record["written_at"]), list(record["seed_ids"]), list(record["shards"])))
    return sorted(commits, key=lambda c: (c.written_at, c.name))


# Of each further role (engines.<role>): what decides its outputs. A run without roles has none of these keys, so
# runs started before roles existed resume as before.
_ROLE_FINGERPRINT_KEYS = ("name", "engine", "source", "base_url", "sampling", "max_model_len", "echo")


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that decide what the output is."""
    found: dict[str, Any] = {}
    for group, keys in _FINGERPRINT_KEYS.items():
        section = config.get(group) or {}
        for key in keys if keys is not None else sorted(section):
            found[f"{group}.{key}"] = section.get(key)
    if (found.get("recipe.best_of_n") or {}).get("n", 1) == 1:  # off: runs started before it existed still resume
        found.pop("recipe.best_of_n", None)
    for role, model in sorted((config.get("engines") or {}).items()):
        for key in _ROLE_FINGERPRINT_KEYS:
            found[f"engines.{role}.{key}"] = (model or {}).get(key)
    embedding = config.get("embedding") or {}
    if embedding.get("keep") or compares_embeddings(config.get("filters") or {}):  # the encoder decides what is kept
        for key in ("model", "fields", "keep", "max_length"):
            found[f"embedding.{key}"] = embedding.get(key)
    student = config.get("student") or {}
    if student.get("kind", "none") != "none":  # a student's columns are part of the rows (absent: as before)
        for key in sorted(student):
            found[f"student.{key}"] = student[key]
    if config.get("src"):  # a derived run (rayjobs/postpass.py): the run it read is part of what it is
        for key in ("uri", "fingerprint", "postpass"):
            found[f"src.{key}"] = config["src"].get(key)
    return json.loads(json.dumps(found, default=str))


def open_run(sink: Any, config: dict[str, Any], overwrite: bool) -> list[Commit]:
    """Get ``sink`` ready for this attempt; returns the commits of earlier attempts of the same run to resume.

    A finished run is kept unless ``overwrite``; an unfinished one with the same fingerprint is resumed; one with a
    different fingerprint is refused (or discarded with ``overwrite``).
    """
    wait_for_earlier_attempt(sink)
    if sink.exists(SUCCESS):
        if not overwrite:
            raise FileExistsError(
                f"{sink.uri} already holds a finished run (_SUCCESS exists); "
                "pass run.overwrite=true to replace it, or choose another run.name / sink.uri"
            )
        log.warning("run.overwrite=true: replacing the finished run at %s", sink.uri)
        return _start(sink, config)
    if overwrite:
        return _start(sink, config)
    if not sink.exists(CONFIG):
        if sink.owned():
            raise FileExistsError(
                f"{sink.uri} holds output that no synthray run config describes (no {CONFIG}); "
                "pass run.overwrite=true to replace it, or choose another sink.uri"
            )
        return _start(sink, config)
    earlier = json.loads(sink.read_text(CONFIG))
    changed = _differences(earlier.get("fingerprint", {}), fingerprint(config))
    if changed:
        raise ValueError(
            f"{sink.uri} holds an unfinished run with a different config ({'; '.join(changed)}); rerun with the same "
            "config to resume it, pass run.overwrite=true to discard it, or choose another run.name / sink.uri"
        )
    earlier["attempts"] = int(earlier.get("attempts", 1)) + 1
    sink.write_atomic(CONFIG, json.dumps(earlier, indent=2).encode("utf-8"))
    commits = reconcile(sink)
    log.info(
        "resuming the unfinished run at %s (attempt %d): %d seeds already committed",
        sink.uri,
        earlier["attempts"],
        sum(len(c.seed_ids) for c in commits),
    )
    return commits


def attempts(sink: Any) -> int:
    return int(json.loads(sink.read_text(CONFIG)).get("attempts", 1))


def _start(sink: Any, config: dict[str, Any]) -> list[Commit]:
    sink.clear()
    sink.write_atomic(CONFIG, json.dumps({"fingerprint": fingerprint(config), "attempts": 1}, indent=2).encode())
    return []


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {json.dumps(before.get(key))} → {json.dumps(now.get(key))}"
        for key in sorted(set(before) | set(now))
        if before.get(key) != now.get(key)
    ]


def reconcile(sink: Any) -> list[Commit]:
    """First writer wins per seed; later duplicates are cut out; shards no record names are deleted.

    Only call this while no writer of the run is active (at the start of an attempt, and after the last batch).
    """
    accepted: list[Commit] = []
    covered: set[str] = set()
    present = {path for kind in KINDS.values() for path in sink.list(kind, suffix=".parquet")}
    for commit in load_commits(sink):
        lost = [shard["path"] for shard in commit.shards if shard["path"] not in present]
        if lost:  # never by this protocol; if someone deleted shards, their seeds are redone rather than lost
            log.warning("%s names missing shards %s: its seeds will be generated again", commit.name, lost)
            sink.remove(commit.name)
            continue
        repeated = covered.intersection(commit.seed_ids)
        if repeated:
            log.warning("%s repeats %d committed seeds (a retried task): keeping the first", commit.name, len(repeated))
            commit = _without_seeds(sink, commit, repeated)
            if commit is None:
                continue
        covered.update(commit.seed_ids)
        accepted.append(commit)
    named = {shard["path"] for commit in accepted for shard in commit.shards}
    for path in sorted(present - named):
        log.info("removing uncommitted shard %s", path)
        sink.remove(path)
    return accepted


def _without_seeds(sink: Any, commit: Commit, seeds: set[str]) -> Commit | None:
    """Rewrite ``commit`` without the rows of ``seeds``: new shards and record first, then the old ones go."""
    kept_seeds = [s for s in commit.seed_ids if s not in seeds]
    shards = []
    for shard in commit.shards:
        table = sink.read_table(shard["path"])
        table = table.filter(pc.invert(pc.is_in(table["seed_id"], value_set=pa.array(sorted(seeds), pa.string()))))
        if table.num_rows:
            # Counted again over the rows kept, for the same columns the original counted.
            summary = summarize(
                table, shard["kind"], list(shard.get("balance") or ()), list(shard.get("tallies") or ())
            )
            shards.append({**shard, **summary, "path": sink.write_table(shard["kind"], table)})
    # The replacement keeps the original's place in the order: its rows were committed then.
    replacement = write_commit(sink, shards, kept_seeds, commit.written_at) if kept_seeds else None
    sink.remove(commit.name)
    for shard in commit.shards:
        sink.remove(shard["path"])
    return replacement


def summarize(table: Any, kind: str, balance_fields: list[str] = (), tally_fields: list[str] = ()) -> dict[str, Any]:
    """What a commit record says of one shard: rows, tokens (in all and per role), reasons (rejected/errors), label
    balance (data) and tallies (data and rejected: every sample the recipe made)."""
    reason_col = {"rejected": "rejected_by", "errors": "stage"}.get(kind)
    return {
        "kind": kind,
        "rows": table.num_rows,
        "prompt_tokens": pc.sum(table["prompt_tokens"]).as_py() or 0,
        "completion_tokens": pc.sum(table["completion_tokens"]).as_py() or 0,
        "roles": role_usage(table["role_usage"]) if "role_usage" in table.column_names else {},
        "reasons": _counts(table[reason_col]) if reason_col else {},
        "balance": {f: _counts(table[f]) for f in balance_fields if kind == "data" and f in table.column_names},
        "tallies": {f: _counts(table[f]) for f in tally_fields if kind != "errors" and f in table.column_names},
    }


def role_usage(column: Any) -> dict[str, dict[str, float]]:
    """Role → summed calls, tokens, errors, retries and seconds of a ``role_usage`` column."""
    items = pc.list_flatten(column)
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    if len(items) == 0:
        return {}
    flat = pa.table({"role": items.field("role"), **{name: items.field(name) for name in USAGE_KEYS}})
    sums = flat.group_by("role").aggregate([(name, "sum") for name in USAGE_KEYS]).to_pylist()
    return {row["role"]: {name: row[f"{name}_sum"] for name in USAGE_KEYS} for row in sums}


def _counts(column: Any) -> dict[str, int]:
    """Value → count of a column, nulls left out (a label a row lacks is not a label)."""
    return {
        str(item["values"]): item["counts"]
        for item in pc.value_counts(column).to_pylist()
        if item["values"] is not None
    }


HEARTBEAT = f"{BOOKKEEPING}/heartbeat.json"


class Heartbeat:
    """While an attempt runs, its driver rewrites ``_synthray/heartbeat.json`` every ``every_s`` seconds, so a second
    attempt on the same sink can tell a live run (wait, or its files would be cleaned up under it) from a dead one."""

    def __init__(self, sink: Any, every_s: float = 10.0) -> None:
        self.sink, self.every_s = sink, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="synthray-heartbeat", daemon=True)

    def _write(self) -> None:
        beat = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time(), "every_s": self.every_s}
        self.sink.write_atomic(HEARTBEAT, json.dumps(beat).encode("utf-8"))

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self._write()
            except Exception as exc:  # a missed beat is not fatal; the writers report real storage failures
                log.warning("could not write the heartbeat: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sink.remove(HEARTBEAT)


def wait_for_earlier_attempt(sink: Any, stale_after: float = 3.0, poll_s: float = 2.0) -> None:
    """Return once no other attempt is alive on ``sink``: its heartbeat is gone, older than ``stale_after`` beats, or
    written by a process of this host that no longer exists."""
    while sink.exists(HEARTBEAT):
        try:
            beat = json.loads(sink.read_text(HEARTBEAT))
        except (FileNotFoundError, ValueError):
            return
        age = time.time() - float(beat["at"])
        if age > stale_after * float(beat.get("every_s", 10)) or _dead_here(beat):
            return
        log.warning(
            "another attempt (host %s, pid %s) wrote its heartbeat %.0f s ago at %s; waiting for it to end",
            beat.get("host"),
            beat.get("pid"),
            age,
            sink.uri,
        )
        time.sleep(poll_s)


def _dead_here(beat: dict[str, Any]) -> bool:
    if beat.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(beat["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
