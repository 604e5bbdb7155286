"""Shared fixtures: one local Ray per test session, composed configs, a real SeaweedFS S3 server on demand."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import ray
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

# Runs in tests do not share completions through the user's cache: a test that wants the cache turns it on.
os.environ.setdefault("SYNTHRAY_CACHE_MODE", "off")
# Runs in tests skip the encoder's diversity figures (≈5 s each): the tests of those figures turn them on.
os.environ.setdefault("SYNTHRAY_SEMANTIC_FIGURES", "false")

REPO = Path(__file__).resolve().parents[1]
CONF = str(REPO / "conf")
# Columns every self_instruct output row carries (the DESIGN.md row schema plus the recipe's own fields).
SELF_INSTRUCT_COLUMNS = (
    "id",
    "seed_id",
    "sample_index",
    "recipe",
    "model",
    "instruction",
    "response",
    "context_ids",
    "prompt_tokens",
    "completion_tokens",
)


def write_jsonl(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    """Write ``rows`` as JSON lines (a str row is written as-is: a broken line on purpose); returns ``path``."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def make_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> dict[str, Any]:
    """The resolved config the CLI would build from ``overrides`` (``config_name``: another entry point's, e.g. the
    refilter's)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="session")
def ray_session():
    """One in-process Ray for all tests that run pipelines, sized like the local cluster config."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def dry_config(tmp_path):
    """A fast config: dry-run engine, built-in seeds, local sink under tmp_path."""

    def build(*overrides: str) -> dict[str, Any]:
        return make_config(["model=dry_run", f"sink.uri={tmp_path / 'out'}", "cluster.progress_bars=false", *overrides])

    return build


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A real S3 server per test module (a fresh one: the cluster test's model upload once left a shared server's
    S3 gateway hung for the next module); credentials are set in the environment the way users set them."""
    from tests.s3server import ACCESS_KEY, SECRET_KEY, seaweedfs

    with seaweedfs(tmp_path_factory.mktemp("s3")) as endpoint:
        mp = pytest.MonkeyPatch()
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        yield endpoint
        mp.undo()


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory):
    """A randomly initialised 2-layer BERT classifier with a word-level tokenizer, saved by the test itself."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("classifier")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "text", "the"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "clean", 1: "toxic"},
        label2id={"clean": 0, "toxic": 1},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return str(path)
