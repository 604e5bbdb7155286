"""Binary run artifacts: files under ``_synthray/artifacts/<name>/`` with a manifest of sizes and SHA-256 checksums.

For run-wide results that are not small JSON values (a corpus sample, a trained student, an index, embeddings):
kept out of the run-state actor, read by the stage that needs them, reused by a resumed run when every file matches
its manifest, and rebuilt when one does not. Only plain formats (JSON lines, npz, Arrow) are written; nothing here
unpickles. ``publish=True`` also copies the files to ``artifacts/<name>/`` when the run finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from rayjobs.commit import ARTIFACTS

log = logging.getLogger("synthray")

MANIFEST = "manifest.json"
PUBLISHED = "artifacts"


def _checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """The binary artifacts of the run at ``sink``."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def _path(self, name: str, file: str = "") -> str:
        if not name or "/" in name or name.startswith((".", "_")):
            raise ValueError(f"artifact name {name!r} must be a plain name (no '/', not starting with '.' or '_')")
        return posixpath.join(ARTIFACTS, name, file) if file else posixpath.join(ARTIFACTS, name)

    def write(self, name: str, files: Mapping[str, bytes], publish: bool = False, **meta: Any) -> None:
        """The files first, the manifest last: an artifact without a manifest (a crash between) does not exist."""
        for file, data in files.items():
            self.sink.write_atomic(self._path(name, file), data)
        manifest = {
            "files": {file: {"bytes": len(data), "sha256": _checksum(data)} for file, data in files.items()},
            "publish": publish,
            **meta,
        }
        self.sink.write_atomic(self._path(name, MANIFEST), json.dumps(manifest, indent=2).encode("utf-8"))

    def manifest(self, name: str) -> dict[str, Any] | None:
        path = self._path(name, MANIFEST)
        return json.loads(self.sink.read_text(path)) if self.sink.exists(path) else None

    def read(self, name: str) -> dict[str, bytes] | None:
        """The artifact's files, or None when it is missing or any file fails its size or checksum (it is then not
        trusted: the caller rebuilds it)."""
        manifest = self.manifest(name)
        if manifest is None:
            return None
        files = {}
        for file, expected in manifest["files"].items():
            path = self._path(name, file)
            data = self.sink.read_bytes(path) if self.sink.exists(path) else None
            if data is None or len(data) != expected["bytes"] or _checksum(data) != expected["sha256"]:
                log.warning("artifact %s: %s does not match its manifest; rebuilding it", name, file)
                return None
            files[file] = data
        return files

    def read_or_build(
        self, name: str, build: Callable[[], Mapping[str, bytes]], publish: bool = False
    ) -> dict[str, bytes]:
        """The stored artifact when it is intact, else ``build()``'s files, stored."""
        found = self.read(name)
        if found is not None:
            return found
        files = dict(build())
        self.write(name, files, publish=publish)
        return files

    def names(self) -> list[str]:
        """Artifacts with a manifest."""
        return sorted(
            posixpath.basename(posixpath.dirname(path)) for path in self.sink.list(ARTIFACTS, suffix="/" + MANIFEST)
        )

    def publish(self) -> list[str]:
        """Copy every artifact whose manifest says so to ``artifacts/<name>/`` (checked first); returns their names."""
        published = []
        for name in self.names():
            manifest = self.manifest(name) or {}
            if not manifest.get("publish"):
                continue
            files = self.read(name)
            if files is None:
                raise RuntimeError(f"artifact {name} is corrupt and cannot be published; rerun to rebuild it")
            for file, data in files.items():
                self.sink.write_bytes(posixpath.join(PUBLISHED, name, file), data)
            published.append(name)
        return published
