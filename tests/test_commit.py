"""The commit protocol on a local sink: records, reconciliation, resume checks, heartbeat, retries."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pytest

from rayjobs import commit
from rayjobs.commit import Heartbeat, load_commits, open_run, reconcile, wait_for_earlier_attempt, write_commit
from rayjobs.sink import Sink, transient
from tests.conftest import make_config


def _rows(seeds: list[str], tag: str) -> pa.Table:
    return pa.table(
        {
            "id": [f"{s}-0" for s in seeds],
            "seed_id": seeds,
            "text": [f"{tag} {s}" for s in seeds],
            "prompt_tokens": [1] * len(seeds),
            "completion_tokens": [2] * len(seeds),
        }
    )


def _commit(sink: Sink, seeds: list[str], tag: str, at: float) -> commit.Commit:
    table = _rows(seeds, tag)
    shard = {**commit.summarize(table, "data"), "path": sink.write_table("data", table)}
    return write_commit(sink, [shard], seeds, written_at=at)


def test_reconcile_keeps_the_first_writer_and_removes_orphans_and_broken_records(tmp_path):
    sink = Sink(str(tmp_path / "out"))
    _commit(sink, ["a", "b"], "first", at=1.0)
    _commit(sink, ["b", "c"], "retry", at=2.0)  # a retried task that overlaps the first on seed b
    broken = _commit(sink, ["d"], "lost", at=3.0)
    sink.remove(broken.shards[0]["path"])  # its shard vanished: seed d must be redone, not counted
    orphan = sink.write_table("data", _rows(["e"], "orphan"))  # a writer died before its record
    accepted = reconcile(sink)
    assert [c.seed_ids for c in accepted] == [["a", "b"], ["c"]]
    table = sink.read_kind("data")
    assert sorted(table["id"].to_pylist()) == ["a-0", "b-0", "c-0"]
    assert table.filter(pa.compute.equal(table["seed_id"], "b"))["text"].to_pylist() == ["first b"]
    assert orphan not in sink.list("data") and len(load_commits(sink)) == 2
    assert accepted[1].shards[0]["rows"] == 1 and accepted[1].written_at == 2.0


def test_records_are_written_atomically_without_leftovers(tmp_path):
    sink = Sink(str(tmp_path / "out"))
    record = _commit(sink, ["a"], "x", at=1.0)
    listing = os.listdir(tmp_path / "out" / "_synthray" / "commits")
    assert listing == [record.name.rsplit("/", 1)[1]]


def test_open_run_starts_resumes_and_refuses(tmp_path):
    uri = str(tmp_path / "out")
    config = make_config(["model=dry_run", f"sink.uri={uri}"])
    sink = Sink(uri)
    assert open_run(sink, config, overwrite=False) == []
    _commit(sink, ["a"], "x", at=1.0)
    config["model"]["replicas"] = 4  # tuning may change between attempts
    assert [c.seed_ids for c in open_run(sink, config, overwrite=False)] == [["a"]]
    assert commit.attempts(sink) == 2
    changed = make_config(["model=dry_run", f"sink.uri={uri}", "recipe=judge"])
    with pytest.raises(ValueError, match=r"different config \(.*recipe.name: \"self_instruct\" → \"judge\""):
        open_run(sink, changed, overwrite=False)
    assert open_run(sink, changed, overwrite=True) == [] and sink.list("data") == []
    sink.write_text("_SUCCESS", "")
    with pytest.raises(FileExistsError, match="finished run"):
        open_run(sink, changed, overwrite=False)


def test_output_that_no_run_describes_is_not_touched(tmp_path):
    sink = Sink(str(tmp_path / "out"))
    sink.write_text("data/mine.parquet", "not synthray's")
    with pytest.raises(FileExistsError, match="no _synthray/config.json"):
        open_run(sink, make_config(["model=dry_run"]), overwrite=False)
    assert sink.exists("data/mine.parquet")


def test_a_live_attempt_is_waited_for_and_a_dead_one_is_not(tmp_path):
    sink = Sink(str(tmp_path / "out"))
    sink.write_text(commit.HEARTBEAT, json.dumps({"host": os.uname().nodename, "pid": 2**22 + 7, "at": time.time()}))
    started = time.monotonic()
    wait_for_earlier_attempt(sink)  # same host, no such process: gone at once
    assert time.monotonic() - started < 1
    with Heartbeat(sink, every_s=0.2):  # this process beats: a second attempt waits until the beats stop
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            _wait_bounded(sink, 1.0)
        assert time.monotonic() - started >= 1.0
    assert not sink.exists(commit.HEARTBEAT)


def _wait_bounded(sink: Sink, seconds: float) -> None:
    import threading

    done = threading.Event()
    threading.Thread(target=lambda: (wait_for_earlier_attempt(sink, poll_s=0.1), done.set()), daemon=True).start()
    if not done.wait(seconds):
        raise TimeoutError


def test_transient_errors_are_told_from_real_ones():
    assert transient(ConnectionRefusedError("Connection refused"))
    assert transient(OSError("[Errno 111] Could not connect to the endpoint URL"))
    assert transient(OSError("[Errno 121] We encountered an internal error, please try again."))
    assert not transient(FileNotFoundError("data/x.parquet"))
    assert not transient(PermissionError("denied"))
    assert not transient(ValueError("bad parquet"))
