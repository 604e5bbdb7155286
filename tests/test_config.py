"""Every config option composes, and bad overrides fail fast naming the valid choices."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest

from filtering.stage import build_filters
from generation.recipes import build_recipe
from rayjobs.resources import engine_gpus
from rayjobs.rows import row_schema
from tests.conftest import CONF, REPO, make_config


def _options(group: str) -> list[str]:
    from pathlib import Path

    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "model,recipe,filters", list(itertools.product(_options("model"), _options("recipe"), _options("filters")))
)
def test_every_combination_composes_and_builds(model, recipe, filters):
    cfg = make_config([f"model={model}", f"recipe={recipe}", f"filters={filters}"])
    built = build_recipe(cfg["recipe"])
    row_schema(built.columns)
    build_filters(cfg["filters"] or {}, built.text_fields)
    assert engine_gpus(cfg["model"]) >= 0


@pytest.mark.parametrize("group", ["source", "sink", "cluster"])
def test_every_option_of_other_groups_composes(group):
    for option in _options(group):
        cfg = make_config([f"{group}={option}", "source.uri=x.jsonl"] if group == "source" else [f"{group}={option}"])
        assert cfg[group]


def test_defaults_are_the_documented_ones():
    cfg = make_config()
    assert cfg["model"]["name"] == "SmolLM2-135M-Instruct"
    assert cfg["recipe"]["name"] == "self_instruct"
    assert cfg["source"]["kind"] == "builtin"
    assert cfg["sink"]["uri"] == "outputs/synthray-demo"
    assert cfg["cluster"]["mode"] == "local"
    assert list(cfg["filters"]) == ["length", "refusal", "echo", "exact_dedup"]


def test_gpu_models_ask_for_tensor_parallel_gpus():
    assert engine_gpus(make_config(["model=llama31_70b_tp4"])["model"]) == 4
    assert engine_gpus(make_config(["model=qwen3_8b"])["model"]) == 1
    assert engine_gpus(make_config(["model=smollm2_cpu"])["model"]) == 0


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rayjobs.generate", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "override,choice",
    [
        ("recipe=nope", "self_instruct"),
        ("model=nope", "smollm2_cpu"),
        ("filters=nope", "default"),
        ("sink=nope", "local"),
    ],
)
def test_bad_group_option_fails_fast_listing_choices(override, choice):
    started = time.time()
    result = _cli(override)
    assert result.returncode != 0
    assert "nope" in result.stderr and choice in result.stderr, result.stderr
    assert time.time() - started < 60  # no Ray, no engine: composition fails before anything starts


def test_unknown_key_fails_naming_it():
    result = _cli("run.nmae=x")
    assert result.returncode != 0 and "nmae" in result.stderr


def test_bad_filter_and_recipe_values_fail_with_choices(tmp_path):
    result = _cli("model=dry_run", "+filters.nope={}", f"sink.uri={tmp_path}")
    assert result.returncode == 2 and "unknown filter 'nope'" in result.stderr and "exact_dedup" in result.stderr
    result = _cli("model=dry_run", "recipe.num_examples=0", f"sink.uri={tmp_path}")
    assert result.returncode == 2 and "recipe.num_examples" in result.stderr
    # A typo'd key is refused by Hydra; one added with + is refused by synthray, naming the valid keys.
    result = _cli("model=dry_run", "model.sampling.temprature=1", f"sink.uri={tmp_path}")
    assert result.returncode != 0 and "temprature" in result.stderr
    for override in ("+model.sampling.temprature=1", "+recipe.answer_sampling.temprature=1"):
        result = _cli("model=dry_run", override, f"sink.uri={tmp_path}")
        assert result.returncode == 2 and "temprature" in result.stderr and "temperature" in result.stderr


def test_multi_gpu_replicas_get_a_packed_placement_group_each(ray_session):
    from ray.util import placement_group_table, remove_placement_group

    from rayjobs.resources import engine_resources

    assert engine_resources(make_config(["model=qwen3_8b"])["model"]) == {"num_gpus": 1}
    tp4 = engine_resources(make_config(["model=llama31_70b_tp4"])["model"])
    assert tp4["num_gpus"] == 0
    strategy = tp4["ray_remote_args_fn"]()["scheduling_strategy"]  # created per actor: one group per replica
    assert strategy.placement_group_capture_child_tasks
    table = placement_group_table(strategy.placement_group)
    assert table["strategy"] == "STRICT_PACK" and list(table["bundles"].values()) == [{"GPU": 1.0, "CPU": 1.0}] * 4
    remove_placement_group(strategy.placement_group)


def test_stages_that_cannot_all_start_are_refused_locally_and_flagged_on_a_cluster(caplog):
    from rayjobs.resources import check_fits

    config = make_config(["model=dry_run"])  # engine 0.5 CPU + filter and writer at 0.25: fits 2 cores
    check_fits(config, cpus=2)
    crowded = make_config(["model=dry_run", "cluster.filter_workers=4", "cluster.stage_cpus=0.5"])
    with pytest.raises(ValueError, match=r"needs 3 CPUs at once .* the cluster has 2: lower cluster.stage_cpus"):
        check_fits(crowded, cpus=2)
    on_ray = make_config(["model=dry_run", "cluster=ray"])  # 0.5 + 0.5 × 4 on 2 CPUs: the cluster might grow
    with caplog.at_level("WARNING", logger="synthray"):
        check_fits(on_ray, cpus=2)
    assert "needs 2.5 CPUs at once" in caplog.text and "autoscaler" in caplog.text
    # A role's own vLLM pool holds its CPUs too: the dry-run generator plus a SmolLM2 pool fit 2 cores, two do not.
    pooled = make_config(["model=dry_run", "+model@engines.large=smollm2_cpu"])
    check_fits(pooled, cpus=2)
    with pytest.raises(ValueError, match=r"needs 3 CPUs at once .*engines.large.replicas × engines.large.num_cpus"):
        check_fits({**pooled, "engines": {"large": {**pooled["engines"]["large"], "replicas": 2}}}, cpus=2)


@pytest.mark.parametrize("model", ["smollm2_cpu", "qwen3_8b", "llama31_70b_tp4"])
def test_shipped_models_queue_twice_what_the_engine_decodes(model, caplog):
    from rayjobs.resources import check_in_flight

    with caplog.at_level("WARNING", logger="synthray"):
        check_in_flight(make_config([f"model={model}"])["model"])
    assert caplog.text == ""


def test_an_engine_fed_no_more_seeds_than_it_decodes_is_flagged_with_the_fix(caplog):
    from rayjobs.resources import check_in_flight

    starved = make_config(["model.batch_size=32", "model.max_tasks_in_flight=8"])["model"]  # 256 for 256 decoded
    with caplog.at_level("WARNING", logger="synthray"):
        check_in_flight(starved)
    assert "256 seeds in flight per engine" in caplog.text and "max_tasks_in_flight to 16 or more" in caplog.text


@pytest.mark.parametrize("key", ["read_workers", "filter_workers", "writer_workers"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "two"])
def test_a_pool_without_a_worker_is_refused_naming_the_key(key, value):
    from rayjobs.resources import check_workers

    with pytest.raises(ValueError, match=rf"cluster.{key} must be a whole number of at least 1, got {value!r}"):
        check_workers({key: value})
    check_workers({key: 3})


def test_an_http_role_without_a_model_name_or_with_a_bad_sampling_key_fails_naming_the_key(tmp_path):
    result = _cli("model=dry_run", "+model@engines.judge=openai", f"sink.uri={tmp_path}")
    assert result.returncode != 0 and "engines.judge.name" in result.stderr, result.stderr
    bad = ("+model@engines.judge=openai", "engines.judge.name=m", "+engines.judge.sampling.temprature=1")
    result = _cli("model=dry_run", *bad, f"sink.uri={tmp_path}")
    assert result.returncode == 2 and "engines.judge.sampling" in result.stderr and "temperature" in result.stderr
