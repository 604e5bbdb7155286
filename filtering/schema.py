"""Required fields present and non-empty; JSON-text fields valid against a JSON schema."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from filtering.base import Filter, Verdict


class SchemaFilter(Filter):
    """Args:
    required: columns that must be present and non-empty.
    json_fields: column → JSON schema; the column's text must parse and validate.
    """

    name = "schema"

    def __init__(self, required: Sequence[str] = (), json_fields: dict[str, dict] | None = None) -> None:
        super().__init__(list(required))
        self.required = list(required)
        self.json_fields = dict(json_fields or {})
        if not self.required and not self.json_fields:
            raise ValueError("schema filter needs `required` columns or `json_fields`")
        self._validators = {}
        if self.json_fields:
            import jsonschema

            self._validators = {k: jsonschema.Draft202012Validator(v) for k, v in self.json_fields.items()}

    def bind_fields(self, default_fields: Any) -> None:
        """The checked columns come from config, not from the recipe's text fields."""

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        for column in self.required:
            value = row.get(column)
            if value is None or (isinstance(value, str | list | dict) and not value):
                return False, f"missing:{column}"
        for column, validator in self._validators.items():
            try:
                value = json.loads(row.get(column) or "")
            except (TypeError, ValueError):
                return False, f"invalid_json:{column}"
            error = next(iter(validator.iter_errors(value)), None)
            if error is not None:
                return False, f"schema:{column}:{error.validator}"
        return True
