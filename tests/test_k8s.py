"""k8s manifests: KubeRay objects validate against the v1 CRD schemas, core objects (Secret, every pod template)
against Kubernetes' own schemas (kubernetes-validate), overlays render, and entrypoints compose against conf/."""

from __future__ import annotations

import copy
import functools
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO, make_config

# The v1 openAPIV3Schema of each KubeRay CRD, carried in the project (source and license: tests/data/kuberay/README.md).
SCHEMAS = REPO / "tests" / "data" / "kuberay"
K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.33.0"


def _rendered() -> dict[str, list[dict[str, Any]]]:
    """Every object a user can apply: plain manifests, and each kustomization rendered (resources + JSON6902
    patches + nameSuffix, the subset of kustomize these use)."""
    objects = {}
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml" and not (path.parent / "kustomization.yaml").exists():
            objects[str(path.relative_to(K8S))] = list(yaml.safe_load_all(path.read_text()))
    for path in sorted(K8S.rglob("kustomization.yaml")):
        objects[str(path.parent.relative_to(K8S))] = _kustomize(path.parent)
    return objects


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs = []
    for resource in spec.get("resources", []):
        target = (directory / resource).resolve()
        docs += _kustomize(target) if target.is_dir() else list(yaml.safe_load_all(target.read_text()))
    for patch in spec.get("patches", []):
        wanted = patch["target"]
        for doc in docs:
            if doc["kind"] == wanted["kind"] and doc["metadata"]["name"] == wanted["name"]:
                for op in yaml.safe_load(patch["patch"]):
                    _apply(doc, op)
    for doc in docs:
        doc["metadata"]["name"] += spec.get("nameSuffix", "")
    return docs


def _apply(doc: dict[str, Any], op: dict[str, Any]) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
    node = functools.reduce(lambda n, key: n[key], parents, doc)
    assert op["op"] in ("replace", "add"), op
    if op["op"] == "add" and isinstance(node, list):  # JSON patch: "-" appends, an index inserts
        node.insert(len(node) if last == "-" else last, copy.deepcopy(op["value"]))
        return
    if op["op"] == "replace":
        node[last]  # noqa: B018 (replace needs the path to exist, as in kustomize)
    node[last] = copy.deepcopy(op["value"])


RENDERED = _rendered()
RAY_OBJECTS = [(name, doc) for name, docs in RENDERED.items() for doc in docs if doc["apiVersion"] == "ray.io/v1"]


@functools.cache
def _schema(kind: str, version: str) -> dict:
    path = SCHEMAS / f"{kind.lower()}-{version}.json"
    assert path.exists(), f"no {version} schema for {kind} under {SCHEMAS}"
    return json.loads(path.read_text())


def _pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    return [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]


def test_every_manifest_and_overlay_is_found():
    assert {"rayjob", "raycluster.yaml", "secret.example.yaml", "overlays/qwen3-8b", "overlays/llama31-70b-tp4"} <= set(
        RENDERED
    )


@pytest.mark.parametrize("name,doc", RAY_OBJECTS, ids=lambda x: x if isinstance(x, str) else "")
def test_ray_objects_match_the_kuberay_crd_schema(name, doc):
    group, version = doc["apiVersion"].split("/")
    jsonschema.validate(doc, _schema(doc["kind"], version))


@pytest.mark.parametrize("name,doc", RAY_OBJECTS, ids=lambda x: x if isinstance(x, str) else "")
def test_pod_templates_are_valid_secure_and_take_secrets_by_reference(name, doc):
    for template in _pod_templates(doc):
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "env" not in container or all(
                "value" not in e or "SECRET" not in e["name"] for e in container["env"]
            )
            assert {"secretRef": {"name": "synthray-s3"}} in container.get("envFrom", [])


def test_the_example_secret_is_a_valid_core_object():
    [secret] = RENDERED["secret.example.yaml"]
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


JOBS = ["rayjob", "overlays/qwen3-8b", "overlays/llama31-70b-tp4", "overlays/cascade-qwen3-8b-llama70b"]


@pytest.mark.parametrize("name", JOBS)
def test_rayjobs_run_one_job_and_clean_up(name):
    [job] = RENDERED[name]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["backoffLimit"] >= 1  # a retry reruns the same entrypoint, which resumes
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert int(worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert any(v["name"] == "model-cache" for v in worker["volumes"])


@pytest.mark.parametrize("name", JOBS)
def test_entrypoints_compose_against_conf_and_fit_their_gpus(name):
    """Every engine of the job (the generator's replicas, and each role's own pool) fits the worker groups: a
    replica's placement group packs on one node, so it needs a group whose workers have its GPUs; the roles are
    placed largest replica first, as the run starts pools before the generator."""
    from rayjobs.resources import engine_gpus, pooled_models

    [job] = RENDERED[name]
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:3] == ["python", "-m", "rayjobs.generate"]
    config = make_config(args[3:])
    assert config["cluster"]["mode"] == "ray" and config["sink"]["uri"].startswith("s3://")
    free = []  # GPUs left on each worker of every group
    for group in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        free += [int(limits["nvidia.com/gpu"])] * group["maxReplicas"]
    engines = [config["model"], *pooled_models(config).values()]
    for model in sorted(engines, key=engine_gpus, reverse=True):
        per_replica = engine_gpus(model)
        for _ in range(model["replicas"]):
            fitting = [i for i, gpus in enumerate(free) if gpus >= per_replica]
            assert fitting, f"{name}: no worker left with {per_replica} GPUs for a replica of {model['name']}"
            free[min(fitting, key=free.__getitem__)] -= per_replica  # the tightest worker that holds it


def test_the_70b_overlay_asks_for_tensor_parallel_4():
    [job] = RENDERED["overlays/llama31-70b-tp4"]
    config = make_config(shlex.split(job["spec"]["entrypoint"])[3:])
    assert config["model"]["engine_args"]["tensor_parallel_size"] == 4
    assert job["metadata"]["name"] == "synthray-generate-llama31-70b"


def test_schema_checks_catch_mistakes():
    [job] = copy.deepcopy(RENDERED["rayjob"])
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, _schema("RayJob", "v1"))
    template = _pod_templates(RENDERED["raycluster.yaml"][0])[1]
    template["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"not": "a quantity"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template},
            KUBERNETES_VERSION,
            strict=True,
        )
