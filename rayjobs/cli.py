"""What every ``python -m rayjobs.X key=value ...`` entry point does around its ``run``: Hydra composes the config
named after it, the run is timed from the command's start, and bad input ends in one clear line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import psutil
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rayjobs.pipeline import EngineFailed, format_summary
from rayjobs.redact import scrub

# An absolute path: Hydra would take a relative one as a Python package here (this module is imported, not run).
CONF = str(Path(__file__).resolve().parents[1] / "conf")


def entry_point(
    config_name: str, run: Callable[..., Any], describe: Callable[[Any], str] = format_summary
) -> Callable[[], None]:
    """The console entry point running ``run(config, started=...)`` on ``conf/<config_name>.yaml`` and overrides,
    then printing ``describe`` of what it returned (by default a run's closing summary)."""

    @hydra.main(config_path=CONF, config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            config: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            print(f"synthray: error: {exc.full_key} is required: pass {exc.full_key}=<value>", file=sys.stderr)
            sys.exit(2)
        try:
            # Timed from the command's start (interpreter and imports included): what "start-up" means to a user.
            result = run(config, started=psutil.Process().create_time())
        except (ValueError, FileNotFoundError, FileExistsError) as exc:
            # Bad input or config: one clear line (secrets scrubbed), no traceback, non-zero exit.
            print(f"synthray: error: {scrub(str(exc))}", file=sys.stderr)
            sys.exit(2)
        except EngineFailed as exc:  # a server that stayed down: what failed and how to resume, no traceback
            print(f"synthray: error: {scrub(str(exc))}", file=sys.stderr)
            sys.exit(1)
        print(describe(result))

    return _main
