"""Where each engine lives and what every stage holds: GPUs and placement groups per engine replica, the engine
pools of roles, the CPU-fit check and engine-core isolation. pipeline.py keeps the run's sequence.

The generator's engines live in the generate actors. A role whose model is a local vLLM different from the generator's
runs as its own pool of engine actors (generation/engines/pool.py), ``replicas`` of them with their own GPUs, called by
every generate actor: loading it in each generate actor would hold one copy per generator replica. Dry-run and HTTP
roles stay inside the generate actors (nothing to load; an HTTP engine is a client under a run-wide budget).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import ray

from generation.engines.pool import EnginePool
from generation.roles import GENERATOR, model_key, role_models
from rayjobs.cores import run_cpus, supported

log = logging.getLogger("synthray")

DEVICES = ("cpu", "gpu")
# A pool engine still starting when the run ends is given this long to stop before its actor is killed.
POOL_STOP_TIMEOUT_S = 30.0


def engine_gpus(model: dict[str, Any]) -> int:
    device = model.get("device", "cpu")
    if device not in DEVICES:
        raise ValueError(f"unknown model.device {device!r}; valid choices: {list(DEVICES)}")
    if device == "cpu":
        return 0
    args = model.get("engine_args") or {}
    return int(args.get("tensor_parallel_size", 1)) * int(args.get("pipeline_parallel_size", 1))


def engine_resources(model: dict[str, Any]) -> dict[str, Any]:
    """Ray resources of one engine replica. One GPU: the actor holds it. Several (tensor × pipeline parallel): a
    placement group per replica, one ``{GPU: 1, CPU: 1}`` bundle per GPU packed on one node, which the actor runs in
    and vLLM's Ray workers fill (placement_group_capture_child_tasks)."""
    gpus = engine_gpus(model)
    if gpus <= 1:
        return {"num_gpus": gpus}
    return {"num_gpus": 0, "ray_remote_args_fn": functools.partial(replica_placement, gpus)}


def replica_placement(gpus: int) -> dict[str, Any]:
    """Remote args of one multi-GPU engine actor: a fresh placement group for its replica."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"GPU": 1, "CPU": 1}] * gpus, strategy="STRICT_PACK")
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)}


WORKER_KEYS = ("read_workers", "filter_workers", "writer_workers")


def check_workers(cluster: dict[str, Any]) -> None:
    """Each pool needs at least one worker, or its stage never runs (Ray Data's own error comes late and vague)."""
    for key in WORKER_KEYS:
        value = cluster.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"cluster.{key} must be a whole number of at least 1, got {value!r}")


def check_fits(config: dict[str, Any], cpus: float, embed_cpus: float = 0.0) -> None:
    """The engine actors and the embed/filter/writer pools all hold their CPUs for the whole run: if they need more
    than the cluster has, some never start and the run would hang. Local mode knows its size and refuses; a Ray
    cluster may grow (autoscaler), so there it is a warning. ``embed_cpus``: the embed stage's, when it runs."""
    model, cluster = config["model"], config["cluster"]
    engines = int(model.get("replicas", 1)) * float(model.get("num_cpus", 1))
    pooled = pooled_models(config)
    engines += sum(int(m.get("replicas", 1)) * float(m.get("num_cpus", 1)) for m in pooled.values())
    stage = float(cluster.get("stage_cpus", 0.25))
    pools = stage * (int(cluster.get("filter_workers", 1)) + int(cluster.get("writer_workers", 1))) + embed_cpus
    if engines + pools <= cpus + 1e-9:
        return
    embed = f" + embed actors {embed_cpus:g} (embedding.workers × embedding.num_cpus)" if embed_cpus else ""
    also = "".join(f" + engines.{role}.replicas × engines.{role}.num_cpus" for role in sorted(pooled))
    message = (
        f"the run needs {engines + pools:g} CPUs at once (engines {engines:g} = model.replicas × model.num_cpus{also}; "
        f"filter and writer actors {pools:g} = cluster.stage_cpus {stage:g} × (cluster.filter_workers + "
        f"cluster.writer_workers){embed}) but the cluster has {cpus:g}: lower cluster.stage_cpus, the worker counts or "
        "the replicas, or add CPUs"
    )
    if cluster.get("mode") == "local":
        raise ValueError(message)
    log.warning("%s (waiting for the autoscaler, if any)", message)


def check_in_flight(model: dict[str, Any]) -> None:
    """An engine actor returns a batch only when its slowest seed is done; unless more seeds are queued than the
    engine decodes at once, its running count sags at every batch boundary (measured: CPU use down from 2 to
    ≈1.4 cores for 15 s of a 512-prompt run with 256 seeds in flight for ``max_num_seqs`` 256)."""
    decoded = int((model.get("engine_args") or {}).get("max_num_seqs") or 0)
    batch = int(model.get("batch_size", 32))
    in_flight = batch * int(model.get("max_tasks_in_flight", 8))
    if in_flight < 2 * decoded:
        log.warning(
            "%d seeds in flight per engine (model.batch_size × model.max_tasks_in_flight) for max_num_seqs %d: "
            "the engine will run below capacity between batches; raise model.max_tasks_in_flight to %d or more",
            in_flight,
            decoded,
            -(-2 * decoded // batch),
        )


def isolated_cpus(config: dict[str, Any]) -> set[int] | None:
    """The run's CPUs when the engine's compute cores should be kept for it (rayjobs/cores.py): a local run of one
    CPU vLLM engine on a Linux machine with a core to spare; None otherwise (a GPU engine leaves the CPUs alone;
    on a cluster other jobs share the nodes; several local engines, a role's pool among them, would each bind the
    same cores)."""
    model, cluster = config["model"], config["cluster"]
    wanted = (
        cluster.get("isolate_engine_cores", True)
        and not pooled_models(config)
        and cluster.get("mode") == "local"
        and model.get("engine") == "vllm"
        and model.get("device", "cpu") == "cpu"
        and int(model.get("replicas", 1)) == 1
    )
    if not wanted or not supported():
        return None
    cpus = run_cpus()
    return cpus if len(cpus) > 1 else None


def pooled_models(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Role → model config of the roles that run as their own engine pool: local vLLM models differing from the
    generator's (one pool per distinct config; the first role naming it keys it)."""
    models = role_models(config["model"], config.get("engines"))
    generator = model_key(models[GENERATOR])
    pooled: dict[str, dict[str, Any]] = {}
    seen = {generator}
    for role, model in models.items():
        key = model_key(model)
        if role != GENERATOR and model.get("engine") == "vllm" and key not in seen:
            pooled[role] = model
            seen.add(key)
    return pooled


def actor_options(model: Mapping[str, Any]) -> dict[str, Any]:
    """Ray options of one pool replica: its CPUs and GPUs (a placement group when it spans several), restarted when
    it dies, and concurrent calls from every generate actor (an async actor: calls share its event loop)."""
    gpus = engine_gpus(dict(model))
    placed = {"num_gpus": gpus} if gpus <= 1 else {"num_gpus": 0, **replica_placement(gpus)}
    return {"num_cpus": float(model.get("num_cpus", 1)), "max_restarts": -1, "max_concurrency": 100_000, **placed}


def start_pools(pooled: Mapping[str, dict[str, Any]], seed: int, state: Any) -> dict[str, list[Any]]:
    """Model key → the replicas of its pool, each registered with the run's state actor and building its engine."""
    pools = {}
    for model in pooled.values():
        replicas = [
            ray.remote(EnginePool).options(**actor_options(model)).remote(model, seed, state)
            for _ in range(int(model.get("replicas", 1)))
        ]
        ray.get([replica.start.remote() for replica in replicas])
        pools[model_key(model)] = replicas
    return pools


def stop_pools(pools: Mapping[str, list[Any]]) -> None:
    """Ends the pools' actors once their engines have stopped (the end-of-run protocol stops them after the last
    seed; a run that failed stops them here first, so vLLM is stopped, not killed)."""
    replicas = [replica for group in pools.values() for replica in group]
    if not replicas:
        return
    stopping = [replica.stop.remote() for replica in replicas]
    _, late = ray.wait(stopping, num_returns=len(stopping), timeout=POOL_STOP_TIMEOUT_S)
    if late:
        log.warning("%d engine pool replicas did not stop within %.0f s", len(late), POOL_STOP_TIMEOUT_S)
    for replica in replicas:
        ray.kill(replica)
