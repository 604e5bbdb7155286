"""A real S3 server (SeaweedFS on 127.0.0.1): seeds read from S3 and output written to S3, read back with pyarrow."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs

from rayjobs import report
from rayjobs.pipeline import run

pytestmark = pytest.mark.s3


def test_s3_source_and_sink_round_trip(ray_session, s3_endpoint, dry_config):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("synthray-test")
    seeds = [{"id": f"s{i}", "instruction": f"Describe the number {i} in one sentence."} for i in range(12)]
    fs.pipe("synthray-test/seeds/part-0.jsonl", "\n".join(json.dumps(s) for s in seeds).encode())
    fs.pipe("synthray-test/seeds/_SUCCESS", b"")  # bookkeeping beside the data is skipped

    config = dry_config(
        "source=jsonl",
        "source.uri=s3://synthray-test/seeds/",
        "sink=s3",
        "sink.uri=s3://synthray-test/runs/r1",
        "run.name=s3-run",
    )
    assert config["sink"]["endpoint_url"] == s3_endpoint
    result = run(config)
    assert result.summary["seeds_accounted"] == 12

    listing = fs.ls("synthray-test/runs/r1")
    assert {p.rsplit("/", 1)[1] for p in listing} >= {"data", "run.json", "report.html", "README.md", "_SUCCESS"}
    shards = fs.glob("synthray-test/runs/r1/data/*.parquet")
    table = pq.read_table(shards, filesystem=fs)
    assert table.num_rows == 24 and len(set(table["id"].to_pylist())) == 24
    assert set(table["seed_id"].to_pylist()) == {s["id"] for s in seeds}
    run_json = fs.cat("synthray-test/runs/r1/run.json").decode()
    assert "synthray-test-secret" not in run_json  # the env credential never lands in run.json

    # The report rebuilds from the bucket alone (credentials from the environment, endpoint on the command line).
    fs.rm("synthray-test/runs/r1/report.html")
    report.main(["s3://synthray-test/runs/r1", "--endpoint-url", s3_endpoint])
    html = fs.cat("synthray-test/runs/r1/report.html").decode()
    assert html.count("data:image/png;base64,") >= 3 and "s3://synthray-test/runs/r1" in html
    assert json.loads(fs.cat("synthray-test/runs/r1/run.json"))["quality"]["seed_overlap"]["seed_vocabulary"] > 0


def test_model_weights_download_once_from_s3(s3_endpoint, tmp_path):
    from generation.models import resolve_model

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("synthray-models")
    fs.pipe(
        {
            "synthray-models/tiny/config.json": b'{"a": 1}',
            "synthray-models/tiny/sub/w.bin": b"\x00" * 1024,
            "synthray-models/tiny/.hidden": b"skip",
        }
    )
    options = {"endpoint_url": s3_endpoint}
    local = resolve_model("s3://synthray-models/tiny", str(tmp_path), options)
    assert (tmp_path / "remote").exists() and local.startswith(str(tmp_path))
    from pathlib import Path

    assert (Path(local) / "config.json").read_bytes() == b'{"a": 1}'
    assert (Path(local) / "sub" / "w.bin").stat().st_size == 1024
    fs.rm("synthray-models/tiny", recursive=True)
    assert resolve_model("s3://synthray-models/tiny", str(tmp_path), options) == local  # cached: no second fetch


def test_model_weights_from_s3_are_fetched_once_resumed_and_verified(s3_endpoint, tmp_path):
    from generation.models import resolve_model

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("models")
    files = {"config.json": b"{}", "model.safetensors": bytes(range(256)) * 20_000, "tokenizer/vocab.txt": b"a\nb\n"}
    for name, data in files.items():
        fs.pipe(f"models/tiny/{name}", data)
    cache = tmp_path / "cache"
    # What a node that died mid-download leaves: a partial weights file, and a same-size but corrupt config.
    staging = cache / "remote" / "models__tiny.partial"
    staging.mkdir(parents=True)
    (staging / "model.safetensors.part").write_bytes(files["model.safetensors"][:1_000_000])
    (staging / "config.json").write_bytes(b"[]")
    path = resolve_model("s3://models/tiny", str(cache), {"endpoint_url": s3_endpoint})
    assert {name: (Path(path) / name).read_bytes() for name in files} == files
    assert not staging.exists()
    # Fetched once: a second resolution never touches the store (this endpoint is closed).
    assert resolve_model("s3://models/tiny", str(cache), {"endpoint_url": "http://127.0.0.1:9"}) == path


def test_refilter_from_s3_to_s3(ray_session, s3_endpoint, dry_config):
    from rayjobs import refilter
    from tests.invariant import assert_invariant
    from tests.test_refilter import refilter_config

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("synthray-refilter")
    source = run(dry_config("sink=s3", "sink.uri=s3://synthray-refilter/runs/src", "run.name=src"))
    config = refilter_config(
        "src.uri=s3://synthray-refilter/runs/src", "sink=s3", "sink.uri=s3://synthray-refilter/runs/strict",
        "filters=strict",
    )  # fmt: skip
    assert config["src"]["endpoint_url"] == s3_endpoint
    result = refilter.run(config)
    seeds = {
        s
        for kind in ("data", "errors")
        if (t := source.sink.read_kind(kind)) is not None
        for s in t["seed_id"].to_pylist()
    }
    assert_invariant(result.sink, seeds)
    record = json.loads(fs.cat("synthray-refilter/runs/strict/run.json"))
    assert record["source_run"][
        "uri"
    ] == "s3://synthray-refilter/runs/src" and "synthray-test-secret" not in json.dumps(record)


def test_the_completion_cache_on_s3_serves_a_second_run(ray_session, s3_endpoint, dry_config, tmp_path):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("synthray-cache")

    def cached_run(name: str) -> dict:
        config = dry_config(
            "cache.mode=use", "cache.uri=s3://synthray-cache/completions", "recipe.machine_examples=0",
            "source.limit=6", f"run.name={name}",
        )  # fmt: skip
        return run({**config, "sink": {**config["sink"], "uri": str(tmp_path / name)}}).summary

    first, second = cached_run("first"), cached_run("second")
    assert first["cache"]["hits"] == 0 and first["cache"]["misses"] > 0
    assert second["cache"] == {
        "hits": first["cache"]["misses"],
        "misses": 0,
        "tokens_saved": second["cache"]["tokens_saved"],
    }
    assert second["cache"]["tokens_saved"] > 0 and fs.glob("synthray-cache/completions/index/*.json")


def test_export_from_s3_to_s3(ray_session, s3_endpoint, dry_config):
    from rayjobs import export
    from tests.test_export import export_config

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("synthray-export")
    source = run(dry_config("sink=s3", "sink.uri=s3://synthray-export/runs/src", "run.name=src"))
    manifest = export.run(export_config("s3://synthray-export/runs/src", "openai_chat", "s3://synthray-export/sft"))
    assert manifest["rows"] == source.summary["kept"] > 0
    lines = fs.cat("synthray-export/sft/data-00000.jsonl").decode().splitlines()
    assert len(lines) == manifest["rows"] and json.loads(lines[0])["messages"][1]["role"] == "assistant"
    assert fs.exists("synthray-export/sft/_SUCCESS")
