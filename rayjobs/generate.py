"""``python -m rayjobs.generate [group=option ...] [key=value ...]`` (also the ``synthray`` console script).

Runs one generation job as configured under conf/ (see README for the groups and the output layout); with a student
(``student=tfidf_logreg``), the LLM's labels are then distilled into the same output (rayjobs/distill.py).
"""

from __future__ import annotations

from typing import Any

from rayjobs.cli import entry_point
from rayjobs.distill import generate_and_distill
from rayjobs.pipeline import RunResult, run
from rayjobs.preview import run_preview


def generate(config: dict[str, Any], started: float | None = None) -> RunResult:
    if int(config["run"].get("preview") or 0):
        return run_preview(config, started=started)
    with_student = (config.get("student") or {}).get("kind", "none") != "none"
    return (generate_and_distill if with_student else run)(config, started=started)


main = entry_point("config", generate)


if __name__ == "__main__":  # vLLM spawns its engine process: the entrypoint must be import-safe
    main()
