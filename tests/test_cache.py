"""The completion cache: keys, packs, checksums and eviction (generation/engines/cache.py, rayjobs/cache.py); runs
that replay what an earlier run asked; a preview and its forecast."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from generation.engines import Completion, DryRunEngine
from generation.engines.cache import CachingClient
from rayjobs.cache import PackStore, cache_settings, engine_identity
from rayjobs.pipeline import run
from rayjobs.preview import run_preview

ASK = [{"role": "user", "content": "Name a river."}]


class Counting(DryRunEngine):
    """The dry-run engine, counting the calls that reach it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    async def chat(self, messages, **kwargs):
        self.calls += 1
        return await super().chat(messages, **kwargs)

    async def score(self, messages, choices):
        self.calls += 1
        return await super().score(messages, choices)


def _client(engine, store, seed: str = "s1", identity: str = "dry"):
    return CachingClient(engine, store, identity, seed_scope=seed)


def _ask_twice_and_score(client):
    async def calls():
        first = await client.chat(ASK, max_tokens=16)
        again = await client.chat(ASK, max_tokens=16)  # the same request a second time: its own entry
        scored = await client.score(ASK, ["Nile", "Thames"])
        return first, again, scored

    return asyncio.run(calls())


def test_a_later_store_replays_every_call_and_a_changed_request_misses(tmp_path):
    engine, store = Counting(), PackStore(str(tmp_path / "cache"))
    made = _ask_twice_and_score(_client(engine, store))
    store.flush()
    assert engine.calls == 3 and not any(c.cached for c in made)
    later, fresh = Counting(), PackStore(str(tmp_path / "cache"))  # another actor, another run
    replayed = _ask_twice_and_score(_client(later, fresh))
    assert later.calls == 0 and all(c.cached for c in replayed)
    assert [c.texts for c in replayed] == [c.texts for c in made] and replayed[2].scores == made[2].scores
    assert replayed[0].completion_tokens == made[0].completion_tokens
    # Another seed, another max_tokens or another engine identity is another request.
    _ask_twice_and_score(_client(later, fresh, seed="s2"))
    asyncio.run(_client(later, fresh).chat(ASK, max_tokens=17))
    _ask_twice_and_score(_client(later, fresh, identity="other"))
    assert later.calls == 3 + 1 + 3


def test_errors_are_never_stored_and_a_corrupted_pack_is_generated_again(tmp_path, caplog):
    class Failing(Counting):
        async def chat(self, messages, **kwargs):
            self.calls += 1
            return Completion(error="HTTP 400: bad request")

    store = PackStore(str(tmp_path / "cache"))
    asyncio.run(_client(Failing(), store).chat(ASK))
    store.flush()
    assert not list((tmp_path / "cache").rglob("*.arrow"))
    asyncio.run(_client(Counting(), store).chat(ASK))
    store.flush()
    [pack] = (tmp_path / "cache" / "packs").glob("*.arrow")
    pack.write_bytes(pack.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    engine = Counting()
    with caplog.at_level("WARNING", logger="synthray"):
        done = asyncio.run(_client(engine, PackStore(str(tmp_path / "cache"))).chat(ASK))
    assert engine.calls == 1 and not done.cached and "does not match its checksum" in caplog.text


def test_the_size_cap_evicts_the_oldest_packs(tmp_path):
    store = PackStore(str(tmp_path / "cache"))
    for i in range(4):
        store.put(f"k{i}", {"texts": ["x" * 1000]})
        store.flush()
    sizes = [i["bytes"] for i in store.indexes()]
    assert store.evict(max_bytes=sum(sizes[-2:])) == 2
    kept = PackStore(str(tmp_path / "cache"))
    assert kept.get("k0") is None and kept.get("k1") is None and kept.get("k3") == {"texts": ["x" * 1000]}


def test_settings_and_identity():
    assert cache_settings({"cache": {"mode": "off"}}) is None
    with pytest.raises(ValueError, match=r"unknown cache.mode 'sometimes'; valid choices: \['use', 'refresh', 'off'\]"):
        cache_settings({"cache": {"mode": "sometimes"}})
    assert cache_settings({"cache": {"uri": "/tmp/c"}, "cluster": {"mode": "ray"}}) is None  # not shared by nodes
    assert cache_settings({"cache": {"uri": "s3://b/c"}, "cluster": {"mode": "ray"}})["uri"] == "s3://b/c"
    http = {"engine": "http", "name": "m", "base_url": "http://a/v1", "sampling": {"temperature": 0.2}}
    assert engine_identity(http) == engine_identity(dict(http))
    assert engine_identity(http) != engine_identity({**http, "base_url": "http://b/v1"})
    assert engine_identity(http) != engine_identity({**http, "sampling": {"temperature": 0.3}})


def _cached_config(dry_config, cache: Path, name: str, *overrides: str) -> dict:
    config = dry_config(
        "recipe.machine_examples=0", f"cache.uri={cache}", "cache.mode=use", f"run.name={name}",
        "recipe.samples_per_seed=1",
        "source.limit=8", *overrides,
    )  # fmt: skip
    return {**config, "sink": {**config["sink"], "uri": str(Path(config["sink"]["uri"]).parent / name)}}


def test_runs_replay_what_an_earlier_run_asked(ray_session, dry_config, tmp_path):
    cache = tmp_path / "cache"
    first = run(_cached_config(dry_config, cache, "first")).summary
    calls = first["roles"]["generator"]["calls"]
    instructions, answers = 8, calls - 8  # one instruction call per seed; kept instructions are answered
    assert first["cache"]["hits"] == 0 and first["cache"]["misses"] == calls
    # Only the answer prompt changed: every instruction call replays; answers are asked again.
    edited = run(_cached_config(dry_config, cache, "edited", "recipe.answer_system=Answer briefly.")).summary
    assert edited["cache"]["hits"] == instructions and edited["cache"]["misses"] == answers
    assert edited["cache"]["tokens_saved"] > 0
    # Another max_tokens: everything is generated again.
    longer = run(_cached_config(dry_config, cache, "longer", "model.sampling.max_tokens=65")).summary
    assert longer["cache"]["hits"] == 0
    # Only a filter changed: no engine call at all.
    strict = run(_cached_config(dry_config, cache, "strict", "filters=strict")).summary
    assert strict["cache"]["misses"] == 0 and strict["cache"]["hits"] == calls
    off = run(_cached_config(dry_config, cache, "off", "cache.mode=off")).summary
    assert "cache" not in off


def test_a_preview_forecasts_the_source_and_the_full_run_replays_it(ray_session, dry_config, tmp_path):
    config = dry_config(
        f"cache.uri={tmp_path / 'cache'}", "cache.mode=use", "run.preview=6", "recipe.machine_examples=0"
    )
    preview = run_preview(config).summary
    figures = json.loads((Path(config["sink"]["uri"] + "-preview") / "forecast.json").read_text())
    seeds = 24  # the built-in seed tasks
    assert preview["seeds_read"] == 6 and figures["seeds"] == seeds and figures["preview_seeds"] == 6
    assert figures["samples"] == round(preview["generated"] * seeds / 6)
    assert figures["completion_tokens"] == round(preview["completion_tokens"] * seeds / 6)
    assert figures["kept_rate"] == round(preview["kept"] / preview["generated"], 4) and figures["wall_s"] > 0
    full = run({**config, "run": {**config["run"], "preview": 0}}).summary
    assert full["cache"]["hits"] >= preview["roles"]["generator"]["calls"]
