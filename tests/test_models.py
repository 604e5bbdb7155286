"""Model sources resolve to what vLLM loads; bad ones fail naming the choices."""

from __future__ import annotations

import pytest

from generation.engines import build_engine
from generation.models import resolve_model


def test_local_path_and_hub_id_pass_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"


def test_missing_local_path_and_unknown_builtin_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match=r"unknown built-in model 'gpt5'; valid choices: \['smollm2'\]"):
        resolve_model("builtin:gpt5")


def test_builtin_smollm2_is_converted_once_to_safetensors():
    # setup.sh converted it; resolving again must reuse the cache, not convert.
    path = resolve_model("builtin:smollm2")
    from pathlib import Path

    files = {p.name for p in Path(path).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", ".synthray-ready"} <= files
    assert "quantization_config" not in (Path(path) / "config.json").read_text()


def test_unknown_engine_names_choices():
    with pytest.raises(ValueError, match=r"unknown model.engine 'tgi'; valid choices: \['dry_run', 'vllm', 'http'\]"):
        build_engine({"engine": "tgi", "name": "x"})
