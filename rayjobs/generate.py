"""``python -m rayjobs.generate [group=option ...] [key=value ...]`` (also the ``synthray`` console script).

Runs one generation job as configured under conf/ (see README for the groups and the output layout).
"""

from __future__ import annotations

import logging
import sys

import hydra
import psutil
from omegaconf import DictConfig, OmegaConf

from rayjobs.distill import generate_and_distill
from rayjobs.pipeline import EngineFailed, format_summary, run
from rayjobs.redact import scrub

log = logging.getLogger("synthray")


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    try:
        # Timed from the command's start (interpreter and imports included): what "start-up" means to a user.
        with_student = (config.get("student") or {}).get("kind", "none") != "none"
        result = (generate_and_distill if with_student else run)(config, started=psutil.Process().create_time())
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        # Bad input or config: one clear line (secrets scrubbed), no traceback, non-zero exit.
        print(f"synthray: error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except EngineFailed as exc:  # a server that stayed down: what failed and how to resume, no traceback
        print(f"synthray: error: {scrub(str(exc))}", file=sys.stderr)
        sys.exit(1)
    print(format_summary(result))


def main() -> None:
    _main()


if __name__ == "__main__":  # vLLM spawns its engine process: the entrypoint must be import-safe
    main()
