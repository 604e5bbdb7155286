"""Any Hugging Face sequence-classification checkpoint as a filter (toxicity, quality, ...), batched, CPU or GPU.

The checkpoint comes from a local path or object storage (downloaded once per node, as model weights are; see
generation/models.py); the model loads lazily in the filter worker. A sample is dropped when the probability of
``label`` is above ``max_score`` (e.g. toxic) or below ``min_score`` (e.g. high quality).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any, ClassVar

import pyarrow as pa

from filtering.base import Filter, Verdict


class ClassifierFilter(Filter):
    """Args:
    model: local directory, s3:// URI, or hub id of a sequence-classification checkpoint.
    label: the label whose probability is scored (a name from the model's config, or an index).
    max_score: drop when the label's probability is above this.
    min_score: drop when the label's probability is below this.
    batch_size: texts per forward pass.
    max_length: tokens per text (truncated).
    device: cpu, cuda, or auto (cuda when available).
    fields: text columns (joined); defaults to the recipe's text fields.
    storage_options: fsspec options for s3:// checkpoints.
    """

    name = "classifier"
    columns: ClassVar[dict[str, pa.DataType]] = {"classifier_score": pa.float64()}

    def __init__(
        self,
        model: str,
        label: str | int = 1,
        max_score: float | None = None,
        min_score: float | None = None,
        batch_size: int = 32,
        max_length: int = 512,
        device: str = "auto",
        fields: Sequence[str] | None = None,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__(fields)
        if max_score is None and min_score is None:
            raise ValueError("classifier filter needs max_score or min_score")
        self.model_source, self.label = model, label
        self.max_score, self.min_score = max_score, min_score
        self.batch_size, self.max_length, self.device_name = batch_size, max_length, device
        self.storage_options = dict(storage_options or {})

    @cached_property
    def _loaded(self) -> tuple[Any, Any, int, str]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from generation.models import resolve_model

        path = resolve_model(self.model_source, storage_options=self.storage_options)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device_name == "auto" else self.device_name
        model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        labels = {str(v): int(k) for k, v in model.config.id2label.items()}
        if isinstance(self.label, int) or str(self.label).isdigit():
            index = int(self.label)
        elif str(self.label) in labels:
            index = labels[str(self.label)]
        else:
            raise ValueError(f"classifier label {self.label!r} not in the model's labels {sorted(labels)}")
        # Never feed more tokens than the model has positions, whatever max_length says.
        self.max_length = min(self.max_length, getattr(model.config, "max_position_embeddings", self.max_length))
        return AutoTokenizer.from_pretrained(path), model, index, device

    def scores(self, texts: list[str]) -> list[float]:
        import torch

        tokenizer, model, index, device = self._loaded
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.inference_mode():
                probs = torch.softmax(model(**batch).logits.float(), dim=-1)[:, index]
            out.extend(probs.tolist())
        return out

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        texts = [self.text(row) for row in rows]
        verdicts = []
        for row, score in zip(rows, self.scores(texts), strict=True):
            row["classifier_score"] = round(score, 6)
            if self.max_score is not None and score > self.max_score:
                verdicts.append((False, f"score_above_{self.max_score}"))
            elif self.min_score is not None and score < self.min_score:
                verdicts.append((False, f"score_below_{self.min_score}"))
            else:
                verdicts.append((True, None))
        return verdicts
