"""Training-ready exports of a finished run: ``python -m rayjobs.export src.uri=RUN format=F dest=D``.

Formats (the rows of data/, in commit order):
- ``openai_chat``: JSONL of ``{"messages": [...]}``, what OpenAI-compatible fine-tuning and TRL's SFTTrainer read;
- ``sharegpt``: JSONL of ``{"conversations": [{"from": "system"|"human"|"gpt", "value": ...}]}``;
- ``alpaca``: JSONL of ``{"instruction", "input", "output"}``;
- ``dpo``: JSONL of ``{"prompt", "chosen", "rejected"}``, plain strings, or message lists with
  ``export.conversational=true`` (TRL's conversational preference format);
- ``hf``: a ``datasets`` ``save_to_disk`` folder of every data/ column, with the run's card as its README.md.

Each recipe declares which of its columns play which part (``export_map``: prompt, input, response, messages,
chosen, rejected); ``export.map.<part>=<column>`` sets or overrides one (the template recipe's columns are the
user's). A run made with ``recipe.best_of_n.pairs=true`` maps chosen/rejected to its pairs. Dialogue speakers become
chat roles by one rule: the first turn's speaker is the user, every other speaker the assistant; consecutive turns of
one role are joined, and a trailing user turn (nothing answers it) is dropped. The destination gets ``_SUCCESS``
last; an existing export is refused unless ``export.overwrite=true``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from filtering.base import as_text, is_messages
from generation.recipes import build_recipe
from rayjobs.cli import entry_point
from rayjobs.commit import SUCCESS
from rayjobs.pipeline import committed_rows, storage_options
from rayjobs.postpass import SourceRun, open_source
from rayjobs.sink import Sink

log = logging.getLogger("synthray")

FORMATS = ("openai_chat", "sharegpt", "alpaca", "dpo", "hf")
PARTS = ("prompt", "input", "response", "system", "messages", "chosen", "rejected")
# The parts each format needs: any one of the alternatives.
NEEDS: dict[str, list[tuple[str, ...]]] = {
    "openai_chat": [("messages",), ("prompt", "response")],
    "sharegpt": [("messages",), ("prompt", "response")],
    "alpaca": [("prompt", "response")],
    "dpo": [("prompt", "chosen", "rejected")],
    "hf": [()],
}
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
ROWS_PER_FILE = 100_000
MANIFEST = "export.json"  # what was exported, from where; also marks a folder synthray may replace


def parts_of(source: SourceRun, overrides: Mapping[str, Any] | None) -> dict[str, str]:
    """part → column for the source run: its recipe's ``export_map``, best-of-n pairs, then ``export.map``."""
    recipe = build_recipe(source.config["recipe"])
    parts = dict(getattr(recipe, "export_map", {}) or {})
    selection = getattr(recipe, "selection", None)
    if selection is not None and selection.pairs:
        parts.update(chosen="chosen", rejected="rejected", response=recipe.field)
        if recipe.prompt_field:
            parts["prompt"] = recipe.prompt_field
    for part, column in (overrides or {}).items():
        if part not in PARTS:
            raise ValueError(f"export.map.{part}: unknown part; valid choices: {list(PARTS)}")
        if column == "":  # '' leaves the part out; null keeps the recipe's
            parts.pop(part, None)
        elif column is not None:
            parts[part] = str(column)
    return parts


def fillable(parts: Mapping[str, str]) -> list[str]:
    """The formats ``parts`` can fill."""
    return [f for f in FORMATS if any(all(p in parts for p in option) for option in NEEDS[f])]


def check_format(fmt: str, parts: Mapping[str, str], recipe: str, columns: list[str]) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not one of {list(FORMATS)}")
    missing = sorted({column for column in parts.values() if column not in columns})
    if missing:
        raise ValueError(f"export.map names column(s) {missing} the run's data/ lacks; its columns: {columns}")
    if fmt not in fillable(parts):
        needs = " or ".join("+".join(option) for option in NEEDS[fmt])
        raise ValueError(
            f"recipe {recipe!r} cannot fill format={fmt} (it needs {needs}; this run maps {dict(parts) or 'nothing'});"
            f" formats it can fill: {fillable(parts)}; or map a part with export.map.<part>=<column>"
        )


def dialogue_turns(messages: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Speaker-named turns as user/assistant turns (the module's rule); turns already in chat roles keep them."""
    if not messages:
        return []
    first = str(messages[0].get("role") or "")
    turns: list[dict[str, str]] = []
    for message in messages:
        speaker = str(message.get("role") or "")
        role = speaker if speaker in ("system", "user", "assistant") else ("user" if speaker == first else "assistant")
        content = str(message.get("content") or "")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n" + content
        else:
            turns.append({"role": role, "content": content})
    while turns and turns[-1]["role"] == "user":
        turns.pop()
    return turns


def chat(row: Mapping[str, Any], parts: Mapping[str, str], system: str | None) -> list[dict[str, str]] | None:
    """The row as a conversation, or None when it has nothing to learn from (an empty answer)."""
    head = [{"role": "system", "content": system}] if system else []
    if "system" in parts and row.get(parts["system"]):
        head = [{"role": "system", "content": as_text(row[parts["system"]])}]
    if "messages" in parts and is_messages(row.get(parts["messages"])):
        turns = dialogue_turns(row[parts["messages"]])
        return head + turns if any(t["role"] == "assistant" for t in turns) else None
    prompt, answer = user_text(row, parts), as_text(row.get(parts["response"]))
    if not prompt or not answer:
        return None
    return head + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def user_text(row: Mapping[str, Any], parts: Mapping[str, str]) -> str:
    """The prompt, with the input (a document, a passage) before it when the recipe has one."""
    prompt = as_text(row.get(parts["prompt"]))
    context = as_text(row.get(parts["input"])) if "input" in parts else ""
    return f"{context}\n\n{prompt}" if context and prompt else prompt


def record(fmt: str, row: Mapping[str, Any], parts: Mapping[str, str], options: Mapping[str, Any]) -> dict | None:
    """One exported line for ``row`` (None: the row cannot fill it, e.g. a group without a preference pair)."""
    system = options.get("system")
    if fmt == "openai_chat":
        messages = chat(row, parts, system)
        return {"messages": messages} if messages else None
    if fmt == "sharegpt":
        messages = chat(row, parts, system)
        if not messages:
            return None
        return {"conversations": [{"from": SHAREGPT_FROM[m["role"]], "value": m["content"]} for m in messages]}
    if fmt == "alpaca":
        instruction, output = as_text(row.get(parts["prompt"])), as_text(row.get(parts["response"]))
        if not instruction or not output:
            return None
        return {
            "instruction": instruction,
            "input": as_text(row.get(parts["input"])) if "input" in parts else "",
            "output": output,
        }
    prompt, chosen, rejected = user_text(row, parts), row.get(parts["chosen"]), row.get(parts["rejected"])
    if not prompt or not chosen or not rejected:
        return None
    if options.get("conversational"):
        head = [{"role": "system", "content": system}] if system else []
        return {
            "prompt": head + [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": as_text(chosen)}],
            "rejected": [{"role": "assistant", "content": as_text(rejected)}],
        }
    return {"prompt": prompt, "chosen": as_text(chosen), "rejected": as_text(rejected)}


def open_destination(config: Mapping[str, Any]) -> Sink:
    dest = config.get("dest")
    if not dest or dest == "???":
        raise ValueError("dest is required: the folder to export to (a local path or s3://...)")
    section = {**(config.get("dest_storage") or {}), "uri": str(dest)}
    sink = Sink(str(dest), storage_options(section))
    if sink.exists(SUCCESS) or sink.list(""):
        if not sink.exists(MANIFEST):  # never delete what synthray did not write
            raise ValueError(f"dest {dest} holds files that are not a synthray export: choose an empty folder")
        if not config["export"].get("overwrite"):
            raise ValueError(f"dest {dest} already holds an export: set export.overwrite=true to replace it")
        sink.remove("", recursive=True)
    return sink


def write_jsonl(
    tables: Iterable[pa.Table], sink: Sink, fmt: str, parts: Mapping[str, str], options: Mapping[str, Any]
) -> dict:
    """Export every row of ``tables`` as JSONL files of ROWS_PER_FILE lines; returns the counts."""
    written = skipped = files = 0
    buffer = io.StringIO()
    lines = 0

    def flush() -> None:
        nonlocal buffer, lines, files
        if lines:
            sink.write_bytes(f"data-{files:05d}.jsonl", buffer.getvalue().encode("utf-8"))
            files += 1
        buffer, lines = io.StringIO(), 0

    for table in tables:
        for row in table.to_pylist():
            line = record(fmt, row, parts, options)
            if line is None:
                skipped += 1
                continue
            buffer.write(json.dumps(line, ensure_ascii=False) + "\n")
            lines += 1
            written += 1
            if lines == ROWS_PER_FILE:
                flush()
        log.info("export: %d rows written, %d skipped so far", written, skipped)
    flush()
    return {"rows": written, "skipped": skipped, "files": files}


def write_hf(tables: Iterable[pa.Table], source: SourceRun, sink: Sink) -> dict:
    """A ``datasets`` folder (save_to_disk) of every column of ``tables``, and the run's card as README.md."""
    import datasets

    tables = list(tables)
    if not tables:
        raise ValueError(f"src.uri {source.sink.uri} has no kept rows to export")
    dataset = datasets.Dataset(pa.concat_tables(tables, promote_options="default"))
    with tempfile.TemporaryDirectory() as staging:
        dataset.save_to_disk(staging)
        if source.sink.exists("README.md"):
            with open(os.path.join(staging, "README.md"), "w", encoding="utf-8") as card:
                card.write(source.sink.read_text("README.md"))
        for root, _, names in os.walk(staging):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as handle:
                    sink.write_bytes(os.path.relpath(path, staging).replace(os.sep, "/"), handle.read())
    return {"rows": dataset.num_rows, "skipped": 0, "files": 1}


def run(config: dict[str, Any], started: float | None = None) -> dict[str, Any]:
    """Export the finished run at ``src.uri`` as ``format`` into ``dest``; returns the counts."""
    started = started or time.time()
    source = open_source(config["src"], storage_options({**config["src"], "uri": config["src"].get("uri")}))
    fmt, options = str(config.get("format")), dict(config.get("export") or {})
    parts = parts_of(source, options.get("map"))
    # The run's data/ shards in commit order (orphans of crashed attempts are never read); the first one's columns are
    # every shard's (one row schema per run).
    tables = committed_rows(source.sink, source.commits, kinds=("data",))
    first = next(tables, None)
    check_format(fmt, parts, source.config["recipe"]["name"], sorted(first.column_names) if first else [])
    sink = open_destination(config)
    tables = itertools.chain([first] if first else [], tables)
    counts = write_hf(tables, source, sink) if fmt == "hf" else write_jsonl(tables, sink, fmt, parts, options)
    manifest = {
        "format": fmt,
        "source": source.sink.uri,
        "dest": sink.uri,
        "parts": parts,
        **counts,
        "seconds": round(time.time() - started, 2),
    }
    sink.write_text(MANIFEST, json.dumps(manifest, indent=2))
    sink.write_text(SUCCESS, "")
    return manifest


def export_line(manifest: Mapping[str, Any]) -> str:
    return (
        f"synthray export: {manifest['rows']:,} rows as {manifest['format']} → {manifest['dest']} "
        f"({manifest['skipped']:,} rows could not fill it; {manifest['seconds']:.1f} s)"
    )


main = entry_point("export", run, export_line)


if __name__ == "__main__":
    main()
