"""Binary run artifacts (rayjobs/artifacts.py): a manifest, checksums, reuse, a corrupted one rebuilt."""

from __future__ import annotations

import json

import pytest

from rayjobs.artifacts import ArtifactStore
from rayjobs.pipeline import keep_corpus_sample, load_artifacts, save_artifact
from rayjobs.sink import Sink


def test_an_artifact_is_written_with_sizes_and_checksums_and_read_back(tmp_path):
    store = ArtifactStore(Sink(str(tmp_path)))
    store.write("student", {"weights.npz": b"\x00\x01" * 100, "labels.json": b'["a", "b"]'}, publish=True)
    manifest = store.manifest("student")
    assert manifest["files"]["weights.npz"]["bytes"] == 200 and len(manifest["files"]["labels.json"]["sha256"]) == 64
    assert store.read("student")["labels.json"] == b'["a", "b"]' and store.names() == ["student"]
    assert (
        store.publish() == ["student"]
        and (tmp_path / "artifacts/student/weights.npz").read_bytes() == b"\x00\x01" * 100
    )
    with pytest.raises(ValueError, match="plain name"):
        store.write("../escape", {"x": b""})


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_corrupted_artifact_is_not_trusted_and_is_rebuilt(tmp_path, damage):
    store = ArtifactStore(Sink(str(tmp_path)))
    store.write("index", {"vectors.npy": b"1234567890"})
    path = tmp_path / "_synthray/artifacts/index/vectors.npy"
    if damage == "flip":
        path.write_bytes(b"1234567899")
    elif damage == "truncate":
        path.write_bytes(b"12345")
    else:
        path.unlink()
    assert store.read("index") is None
    built = []
    files = store.read_or_build("index", lambda: built.append(1) or {"vectors.npy": b"rebuilt"})
    assert files == {"vectors.npy": b"rebuilt"} and built == [1] and store.read("index") == files
    assert store.read_or_build("index", lambda: pytest.fail("an intact artifact is reused")) == files


def test_the_corpus_sample_is_an_artifact_reused_on_resume_and_rebuilt_when_corrupted(tmp_path, caplog):
    sink = Sink(str(tmp_path))
    drawn = [("s1", json.dumps({"text": "one"})), ("s2", json.dumps({"text": "two"}))]
    first = keep_corpus_sample(sink, drawn)
    assert first == [{"text": "one", "id": "s1"}, {"text": "two", "id": "s2"}]
    assert keep_corpus_sample(sink, [("s9", json.dumps({"text": "new file"}))]) == first  # a resume: same sample
    (tmp_path / "_synthray/artifacts/corpus_sample/rows.jsonl").write_text('{"text": "tampered", "id": "x"}\n')
    assert keep_corpus_sample(sink, drawn) == first and "does not match its manifest" in caplog.text
    save_artifact(sink, "artifact/taxonomy", {"labels": []})  # a JSON artifact beside the binary one
    assert load_artifacts(sink) == {"artifact/taxonomy": {"labels": []}}
