"""A user's clone has nothing beside it: no code, test, script or config of the project may read a path outside it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO

# A path built from the repository's parent directory, and relative paths (resolved against the file that names them).
_PARENT = re.compile(r"\b(?:REPO|ROOT)\.parent\b")
_RELATIVE = re.compile(r"(?:\.\./)+[\w.-]*")
_SCANNED = {".py", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini"}
_SKIPPED = {".venv", ".git", "outputs", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _project_files():
    for path in sorted(REPO.rglob("*")):
        parts = path.relative_to(REPO).parts
        wanted = path.suffix in _SCANNED or path.name in {"Makefile", "run"}
        if wanted and path.is_file() and not _SKIPPED & set(parts) and not parts[0].endswith(".egg-info"):
            yield path


def _leaves_the_tree(path: Path, line: str) -> bool:
    if _PARENT.search(line):
        return True
    return any(REPO not in (path.parent / found).resolve().parents for found in _RELATIVE.findall(line))


def test_nothing_in_the_project_reads_a_path_outside_its_own_tree():
    offending = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _project_files()
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if _leaves_the_tree(path, line)
    ]
    assert not offending, "\n".join(offending)


def test_the_check_sees_what_it_must_refuse():
    here = REPO / "tests" / "test_k8s.py"
    assert _leaves_the_tree(here, 'SCHEMAS = REPO.parent / "elsewhere" / "schemas"')
    assert _leaves_the_tree(REPO / "Makefile", "cat ../elsewhere/DESIGN.md")
    assert _leaves_the_tree(REPO / "k8s" / "overlays" / "x" / "kustomization.yaml", "- ../../../../rayjob")
    assert not _leaves_the_tree(REPO / "k8s" / "overlays" / "x" / "kustomization.yaml", "- ../../rayjob")
    assert not _leaves_the_tree(REPO / "rayjobs" / "generate.py", '@hydra.main(config_path="../conf")')
    assert any(p.name == "conftest.py" for p in _project_files())
