"""The row schema that flows through the pipeline, and which columns each output directory keeps."""

from __future__ import annotations

import pyarrow as pa

from generation.recipes.base import USAGE_KEYS

# A seed as it travels to the engines: its id, the row as JSON, and why it cannot be used (empty when it can).
SEED_SCHEMA = pa.schema([("seed_id", pa.string()), ("seed", pa.string()), ("error", pa.string())])

LINEAGE = [
    ("id", pa.string()),
    ("seed_id", pa.string()),
    ("sample_index", pa.int32()),
    ("recipe", pa.string()),
    ("model", pa.string()),
]
# Per role (generator, judge, critic...): the calls booked on the row and what they cost; summed from the commit
# records into run.json's per-role figures, so those survive a resume. A list of structs, not a map: Hugging Face
# datasets cannot load Arrow maps.
ROLE_USAGE_TYPE = pa.list_(
    pa.struct(
        [("role", pa.string())] + [(name, pa.float64() if name == "seconds" else pa.int64()) for name in USAGE_KEYS]
    )
)
TOKENS = [("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("role_usage", ROLE_USAGE_TYPE)]
# `status` routes a row to data/ (ok), rejected/ or errors/; it is never written, the directory says it.
STATUS = [("status", pa.string())]
ERROR = [("stage", pa.string()), ("error", pa.string()), ("seed", pa.string())]
REJECT = [("rejected_by", pa.string()), ("reject_reason", pa.string())]

KINDS = {"ok": "data", "rejected": "rejected", "error": "errors"}
_DROPPED = {
    "data": {"status", *(n for n, _ in ERROR), *(n for n, _ in REJECT)},
    "rejected": {"status", *(n for n, _ in ERROR)},
    "errors": {"status", *(n for n, _ in REJECT)},
}


def row_schema(recipe_columns: dict[str, pa.DataType]) -> pa.Schema:
    clash = sorted(set(recipe_columns) & {n for n, _ in LINEAGE + TOKENS + STATUS + ERROR + REJECT})
    if clash:
        raise ValueError(f"recipe columns {clash} clash with synthray's own columns")
    return pa.schema(LINEAGE + list(recipe_columns.items()) + TOKENS + STATUS + ERROR + REJECT)


def columns_for(kind: str, schema: pa.Schema) -> list[str]:
    """Columns written under ``kind`` (data, rejected or errors), in schema order."""
    return [name for name in schema.names if name not in _DROPPED[kind]]
