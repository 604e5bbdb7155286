"""Training-ready exports (rayjobs/export.py), each read back by the library its users would read it with."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from rayjobs import export
from rayjobs.pipeline import run
from tests.conftest import make_config


def export_config(src: Path | str, fmt: str, dest: Path | str, *extra: str) -> dict:
    return make_config([f"src.uri={src}", f"format={fmt}", f"dest={dest}", *extra], config_name="export")


@pytest.fixture(scope="module")
def instruct_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("instruct") / "run"
    run(make_config(["model=dry_run", "source.limit=6", f"sink.uri={out}", "cluster.progress_bars=false"]))
    return out


@pytest.fixture(scope="module")
def pairs_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "run"
    overrides = ["recipe.machine_examples=0", "recipe.best_of_n.n=3", "recipe.best_of_n.pairs=true", "filters=none"]
    result = run(make_config(["model=dry_run", "source.limit=6", f"sink.uri={out}", *overrides]))
    return out, result


def _kept(run_dir: Path) -> list[dict]:
    return datasets.load_dataset("parquet", data_files=str(run_dir / "data" / "*.parquet"), split="train").to_list()


def _jsonl(dest: Path) -> datasets.Dataset:
    return datasets.load_dataset("json", data_files=str(dest / "data-*.jsonl"), split="train")


def _item(feature) -> dict:
    """The element features of a list feature (``datasets.List``, or a plain list in older releases)."""
    return feature.feature if hasattr(feature, "feature") else feature[0]


def test_openai_chat_is_what_an_sft_trainer_reads_and_the_chat_template_applies(instruct_run, tmp_path):
    from transformers import AutoTokenizer

    from generation.models import resolve_model

    manifest = export.run(export_config(instruct_run, "openai_chat", tmp_path / "sft"))
    loaded = _jsonl(tmp_path / "sft")
    kept = _kept(instruct_run)
    assert manifest["rows"] == len(loaded) == len(kept) > 0 and (tmp_path / "sft" / "_SUCCESS").exists()
    assert set(_item(loaded.features["messages"])) == {"role", "content"}
    first = loaded[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant"]
    assert (first[0]["content"], first[1]["content"]) == (kept[0]["instruction"], kept[0]["response"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:smollm2"))
    text = tokenizer.apply_chat_template(first, tokenize=False)
    assert first[1]["content"] in text and text.count("<|im_start|>assistant") == 1


def test_sharegpt_and_alpaca_load_with_their_expected_features(instruct_run, tmp_path):
    export.run(export_config(instruct_run, "sharegpt", tmp_path / "sharegpt", "export.system=Be brief."))
    conversations = _jsonl(tmp_path / "sharegpt")
    assert set(_item(conversations.features["conversations"])) == {"from", "value"}
    assert [t["from"] for t in conversations[0]["conversations"]] == ["system", "human", "gpt"]
    export.run(export_config(instruct_run, "alpaca", tmp_path / "alpaca"))
    alpaca = _jsonl(tmp_path / "alpaca")
    assert set(alpaca.column_names) == {"instruction", "input", "output"}
    assert alpaca[0]["input"] == "" and alpaca[0]["output"] == _kept(instruct_run)[0]["response"]


def test_hf_is_a_save_to_disk_folder_with_the_card(instruct_run, tmp_path):
    export.run(export_config(instruct_run, "hf", tmp_path / "hf"))
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    kept = _kept(instruct_run)
    assert loaded.num_rows == len(kept) and loaded[0]["id"] == kept[0]["id"]
    assert "instruction" in loaded.column_names and "role_usage" in loaded.column_names
    assert (tmp_path / "hf" / "README.md").read_text() == (instruct_run / "README.md").read_text()


def test_best_of_n_pairs_export_as_dpo_oriented_by_score(pairs_run, tmp_path):
    run_dir, _ = pairs_run
    export.run(export_config(run_dir, "dpo", tmp_path / "dpo"))
    pairs = _jsonl(tmp_path / "dpo")
    kept = [r for r in _kept(run_dir) if r["chosen"] is not None]
    assert len(pairs) == len(kept) > 0
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        (r["instruction"], r["chosen"], r["rejected"]) for r in kept
    ]
    export.run(export_config(run_dir, "dpo", tmp_path / "conv", "export.conversational=true"))
    conversational = _jsonl(tmp_path / "conv")
    assert conversational[0]["prompt"][-1]["role"] == "user" and conversational[0]["chosen"][0]["role"] == "assistant"


def test_critique_revise_exports_its_own_preference_pairs(ray_session, tmp_path):
    out = tmp_path / "cr"
    run(make_config(["model=dry_run", "recipe=critique_revise", "source.limit=3", f"sink.uri={out}"]))
    export.run(export_config(out, "dpo", tmp_path / "dpo"))
    pairs, kept = _jsonl(tmp_path / "dpo"), _kept(out)
    assert len(pairs) == len(kept) and pairs[0]["chosen"] == kept[0]["chosen"]


def test_dialogue_speakers_become_user_and_assistant_by_the_stated_rule():
    turns = export.dialogue_turns(
        [
            {"role": "Ana", "content": "Hi."},
            {"role": "Ben", "content": "Hello."},
            {"role": "Ben", "content": "How can I help?"},
            {"role": "Cy", "content": "I can too."},
            {"role": "Ana", "content": "Thanks."},
        ]
    )
    assert turns == [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello.\nHow can I help?\nI can too."},
    ]  # the first speaker is the user, everyone else the assistant; a trailing user turn has no answer


def test_an_export_the_recipe_cannot_fill_names_the_formats_it_can(ray_session, tmp_path):
    out = tmp_path / "labels"
    run(make_config(["model=dry_run", "recipe=pseudo_label", "source.limit=2", f"sink.uri={out}"]))
    with pytest.raises(ValueError, match=r"cannot fill format=openai_chat.*formats it can fill: \['hf'\]"):
        export.run(export_config(out, "openai_chat", tmp_path / "x"))
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\]"):
        export.run(export_config(out, "alpaca", tmp_path / "x", "export.map.prompt=nope", "export.map.response=label"))
    manifest = export.run(
        export_config(out, "alpaca", tmp_path / "x", "export.map.prompt=text", "export.map.response=label")
    )
    assert manifest["rows"] == len(_kept(out))
    with pytest.raises(ValueError, match="format='csv' is not one of"):
        export.run(export_config(out, "csv", tmp_path / "y"))


def test_the_source_must_be_finished_and_the_destination_is_never_overwritten_silently(instruct_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(ValueError, match="holds no finished run"):
        export.run(export_config(unfinished, "openai_chat", tmp_path / "a"))
    dest = tmp_path / "sft"
    export.run(export_config(instruct_run, "openai_chat", dest))
    with pytest.raises(ValueError, match="export.overwrite=true"):
        export.run(export_config(instruct_run, "alpaca", dest))
    export.run(export_config(instruct_run, "alpaca", dest, "export.overwrite=true"))
    assert json.loads((dest / "export.json").read_text())["format"] == "alpaca"
    assert "instruction" in (dest / "data-00000.jsonl").read_text()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a synthray export"):
        export.run(export_config(instruct_run, "alpaca", foreign, "export.overwrite=true"))
    assert (foreign / "notes.txt").exists()
