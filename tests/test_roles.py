"""Several models in one run: roles in config, the fingerprint and run.json, and an HTTP judge behind a server that
fails on demand (tests/openai_server.py) while the dry-run engine generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayjobs.commit import fingerprint
from rayjobs.pipeline import EngineFailed, run
from tests.conftest import make_config, write_jsonl
from tests.invariant import assert_invariant
from tests.openai_server import FaultServer, serving

KEY_ENV, KEY = "TEAM_LLM_CREDS", "sk-team-5b9e0d27c4a1f863"  # an ordinary name: not one the scrubber would guess


def judge_overrides(server: FaultServer, *extra: str) -> list[str]:
    return [
        "+model@engines.judge=openai",
        f"engines.judge.name={server.model}",
        f"engines.judge.base_url={server.base_url}",
        f"engines.judge.api_key_env={KEY_ENV}",
        "engines.judge.max_retries=8",
        "engines.judge.timeout_s=1",
        "engines.judge.price_per_mtok={prompt:0.5,completion:1.5}",
        *extra,
    ]


def files_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file())


def test_a_role_the_run_does_not_set_is_served_by_the_generator(ray_session, dry_config):
    result = run(dry_config("recipe=judge", "recipe.mode=pairwise", "source.dataset=answer_pairs"))
    roles = result.summary["roles"]
    assert set(roles) == {"generator", "judge"} and roles["judge"]["model"] == "dry-run"
    assert roles["generator"]["calls"] == 0 and roles["judge"]["calls"] == 2 * result.summary["seeds_read"]
    assert "position_consistency_rate" in result.summary
    kept = result.sink.read_kind("data").to_pylist()
    assert all({u["role"] for u in row["role_usage"]} == {"judge"} for row in kept)


def test_roles_with_equal_configs_share_one_engine_and_configs_are_checked():
    from generation.roles import build_engines

    model = make_config(["model=dry_run"])["model"]
    engines = build_engines({"generator": model, "critic": dict(model), "judge": {**model, "echo": True}})
    assert engines.role("critic")._engine is engines._engine and engines.role("judge")._engine is not engines._engine
    with pytest.raises(ValueError, match=r"engines.judge.engine 'grpc'; valid choices: \['dry_run', 'vllm', 'http'\]"):
        run(make_config(["model=dry_run", "+model@engines.judge=dry_run", "engines.judge.engine=grpc"]))
    with pytest.raises(ValueError, match=r"engines.judge: base_url must be the http"):
        run(make_config(["model=dry_run", "+model@engines.judge=openai", "engines.judge.base_url=localhost:8000"]))
    with pytest.raises(ValueError, match=r"engines.judge.price_per_mtok \{'input': 1\} is not a price"):
        run(make_config(["model=dry_run", "+model@engines.judge=dry_run", "+engines.judge.price_per_mtok={input:1}"]))


def test_a_changed_judge_is_a_different_run(tmp_path):
    base = ["model=dry_run", "recipe=judge", "+model@engines.judge=openai", "engines.judge.name=a"]
    first = fingerprint(make_config(base))
    assert first["engines.judge.name"] == "a" and "engines.judge.base_url" in first
    assert fingerprint(make_config(base[:-1] + ["engines.judge.name=b"])) != first
    assert not any(k.startswith("engines.") for k in fingerprint(make_config(["model=dry_run"])))


def pairs(tmp_path: Path, count: int) -> Path:
    rows = [
        {"id": f"p{i:03d}", "instruction": f"Question {i}?", "response_a": f"Answer {i}.", "response_b": f"Reply {i}."}
        for i in range(count)
    ]
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_an_http_judge_through_every_fault_completes_the_run_within_its_budgets(
    ray_session, dry_config, monkeypatch, tmp_path
):
    monkeypatch.setenv(KEY_ENV, KEY)
    faults = {1: "429", 4: "500", 7: "timeout", 10: "malformed", 13: "drop", 16: "401"}
    # 6 faults in every 29 requests and 8 retries: a call fails for good with odds about 0.21^9, 1e-4 per run.
    server = FaultServer(key=KEY, faults=faults, every=29, latency_s=0.1, hang_s=2.0)
    with serving(server):
        config = dry_config(
            "recipe=judge",
            "recipe.mode=pairwise",
            "source=jsonl",
            f"source.uri={pairs(tmp_path, 60)}",
            "model.batch_size=4",
            *judge_overrides(server, "engines.judge.max_concurrency=3", "engines.judge.requests_per_minute=600"),
        )
        result = run(config)
    summary, sink = result.summary, result.sink
    assert_invariant(sink, [f"p{i:03d}" for i in range(60)])
    assert server.seen.peak <= 3
    # 600 a minute is 10 a second with a burst of 10: at most 10 × 10 + 10 granted in any 10 s (and 10 × 2 + 10 in
    # 2 s). Arrivals lag their grants by a varying few milliseconds, hence windows 0.1 s short.
    assert server.seen.most_in_window(9.9) <= 110 and server.seen.most_in_window(1.9) <= 30
    assert len(server.seen.times) > 120  # 60 pairs judged in two orders, and the retries
    judge = summary["roles"]["judge"]
    assert judge["engine"] == "http" and judge["retries"] >= 4 and judge["calls"] > 0
    assert judge["cost_usd"] == pytest.approx((judge["prompt_tokens"] * 0.5 + judge["completion_tokens"] * 1.5) / 1e6)
    errors = sink.read_kind("errors")
    assert errors is not None and errors.num_rows == judge["errors"] > 0  # each 401 fault fails its seed's call
    assert all("HTTP 401" in e and KEY_ENV in e for e in errors["error"].to_pylist())
    record = json.loads(sink.read_text("run.json"))
    assert record["config"]["engines"]["judge"]["api_key_env"] == KEY_ENV
    assert "Models by role" in sink.read_text("report.html") and "Models by role" in sink.read_text("README.md")
    assert KEY not in files_text(Path(sink.uri))


def test_a_judge_server_that_stays_down_fails_the_run_and_a_rerun_resumes_it(
    ray_session, dry_config, monkeypatch, tmp_path
):
    monkeypatch.setenv(KEY_ENV, KEY)
    server = FaultServer(key=KEY, latency_s=0.05)
    ids = [f"p{i:03d}" for i in range(60)]
    with serving(server):
        config = dry_config(
            "recipe=judge",
            "recipe.mode=single",
            "recipe.response_field=response_a",
            "source=jsonl",
            f"source.uri={pairs(tmp_path, 60)}",
            "model.batch_size=2",
            *judge_overrides(server, "engines.judge.max_retries=1"),
        )
        server.down_after = 40
        with pytest.raises(EngineFailed, match=r"still fails after 1 retries \(HTTP 503.*rerun the same command"):
            run(config)
        server.down_after = None
        result = run(config)
    counts = assert_invariant(result.sink, ids)
    assert result.summary["attempt"] == 2 and result.summary["resumed_seeds"] > 0
    assert counts["data"] + counts["rejected"] + counts["errors"] == 60
    # The judge's figures cover both attempts' committed rows, summed from the commit records.
    tables = [result.sink.read_kind(kind) for kind in ("data", "rejected", "errors")]
    usage = [u for t in tables if t is not None for row in t.to_pylist() for u in row["role_usage"] or []]
    judge = result.summary["roles"]["judge"]
    assert judge["calls"] == sum(u["calls"] for u in usage) >= 60 - counts["errors"]
    assert judge["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage) > 0


def test_a_wrong_key_or_model_fails_before_any_seed_naming_the_variable_not_the_key(dry_config, monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-1234567890")
    with serving(FaultServer(key=KEY)) as server:
        with pytest.raises(ValueError, match=f"refused the API key from environment variable {KEY_ENV}") as refused:
            run(dry_config("recipe=judge", *judge_overrides(server)))
        assert "sk-wrong" not in str(refused.value)
        monkeypatch.setenv(KEY_ENV, KEY)
        with pytest.raises(ValueError, match=r"does not serve model 'other'; it serves \['fault-model'\]"):
            run(dry_config("recipe=judge", *judge_overrides(server), "engines.judge.name=other"))
    with pytest.raises(ValueError, match="no answer from http://127.0.0.1:.* is the server up"):
        run(dry_config("recipe=judge", *judge_overrides(server, "engines.judge.max_retries=0")))
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_cascade_run_reports_deferral_accuracy_and_cost_against_all_large(ray_session, dry_config):
    result = run(
        dry_config(
            "recipe=cascade",
            "recipe.threshold=0.8",
            "+model@engines.large=dry_run",
            "engines.large.name=big",
            "+engines.large.price_per_mtok={prompt:2,completion:8}",
            "+model.price_per_mtok={prompt:0.1,completion:0.4}",
        )
    )
    cascade, roles = result.summary["cascade"], result.summary["roles"]
    kept = result.sink.read_kind("data").to_pylist()
    deferred = sum(row["answered_by"] == "large" for row in kept)
    assert cascade["items"] == len(kept) == result.summary["seeds_read"] and 0 < deferred < len(kept)
    assert cascade["deferred"] == deferred == roles["large"]["calls"]
    assert all((row["small_confidence"] < 0.8) == (row["answered_by"] == "large") for row in kept)
    spent = roles["generator"]["cost_usd"] + roles["large"]["cost_usd"]  # each rounded to 1e-6 USD
    assert cascade["cascade_cost_usd"] == pytest.approx(spent, abs=1e-6)
    assert cascade["all_large_cost_usd"] == pytest.approx(roles["large"]["cost_usd"] / deferred * len(kept), abs=1e-5)
    assert 0 <= cascade["accuracy"] <= 1  # the built-in set has reference answers
    assert "items deferred" in (Path(result.sink.uri) / "report.html").read_text()
    assert "items deferred" in (Path(result.sink.uri) / "README.md").read_text()
