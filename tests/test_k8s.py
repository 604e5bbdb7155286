"""k8s manifests validate against the KubeRay v1 CRD schemas, and their entrypoints compose against conf/."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import REPO, make_config

SCHEMAS = REPO.parent / "shared" / "k8s-schemas"
MANIFESTS = sorted((REPO / "k8s").glob("*.yaml"))
CRDS = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}


@functools.cache
def _schema(kind: str, version: str) -> dict:
    for doc in yaml.safe_load_all((SCHEMAS / CRDS[kind]).read_text()):
        for v in doc["spec"]["versions"]:
            if v["name"] == version:
                return v["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no {version} schema for {kind}")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_crd_schema(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        group, version = doc["apiVersion"].split("/")
        assert group == "ray.io" and version == "v1"
        jsonschema.validate(doc, _schema(doc["kind"], version))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_entrypoint_overrides_compose(path: Path):
    for doc in yaml.safe_load_all(path.read_text()):
        entrypoint = doc.get("spec", {}).get("entrypoint")
        if not entrypoint:
            continue
        args = shlex.split(entrypoint)
        assert args[:3] == ["python", "-m", "rayjobs.generate"]
        config = make_config(args[3:])
        assert config["cluster"]["mode"] == "ray"


def test_schema_check_catches_a_wrong_type():
    doc = yaml.safe_load((REPO / "k8s" / "rayjob.yaml").read_text())
    doc["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema("RayJob", "v1"))
