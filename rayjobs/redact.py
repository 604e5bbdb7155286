"""Keep credentials out of run.json, logs and error messages."""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "***"
_SECRET_KEY = re.compile(r"(secret|password|passwd|credential|api_?key|access_?key|^key$|token$|^auth)", re.I)
_SECRET_ENV = re.compile(r"(SECRET|PASSWORD|TOKEN|CREDENTIAL|ACCESS_KEY|API_KEY)", re.I)


# Variables the config names as holding a secret (an HTTP role's api_key_env), whatever they are called.
_NAMED_SECRETS: set[str] = set()


def keep_secret_env(name: str) -> None:
    """Scrub the value of environment variable ``name`` too, from now on in this process."""
    _NAMED_SECRETS.add(name)


def _env_secrets() -> list[str]:
    # Values of secret-looking or named environment variables, longest first so one never masks part of another.
    return sorted(
        (v for k, v in os.environ.items() if (_SECRET_ENV.search(k) or k in _NAMED_SECRETS) and len(v) >= 4),
        key=len,
        reverse=True,
    )


def scrub(text: str) -> str:
    """``text`` with the value of every secret-looking environment variable replaced by ``***``."""
    for value in _env_secrets():
        text = text.replace(value, REDACTED)
    return text


def redact(value: Any, key: str = "") -> Any:
    """A copy of a config tree with secret-named keys masked and secret env values scrubbed from strings."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    # A key naming the variable that holds a secret (api_key_env) shows the name: the value is scrubbed below.
    if value is not None and _SECRET_KEY.search(key) and not key.endswith("_env"):
        return REDACTED
    return scrub(value) if isinstance(value, str) else value
