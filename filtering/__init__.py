"""Filters (one small class each), their registry and the filter stage that applies them in order.

The registry names each filter's module rather than importing it: a run pays only for the filters it configures
(the Gopher and MinHash filters compile their kernels, the classifier imports torch).
"""

from __future__ import annotations

import importlib

from filtering.base import Filter

FILTERS: dict[str, str] = {
    "length": "filtering.length:LengthFilter",
    "refusal": "filtering.refusal:RefusalFilter",
    "echo": "filtering.echo:EchoFilter",
    "exact_dedup": "filtering.exact_dedup:ExactDedupFilter",
    "near_dedup": "filtering.near_dedup:NearDedupFilter",
    "semantic_dedup": "filtering.semantic_dedup:SemanticDedupFilter",
    "pii": "filtering.pii:PIIRedactor",
    "threshold": "filtering.threshold:ThresholdFilter",
    "schema": "filtering.schema:SchemaFilter",
    "gopher_quality": "filtering.gopher:GopherQualityFilter",
    "gopher_repetition": "filtering.gopher:GopherRepetitionFilter",
    "decontamination": "filtering.decontamination:DecontaminationFilter",
    "novelty": "filtering.novelty:NoveltyFilter",
    "fineweb_quality": "filtering.fineweb:FineWebQualityFilter",
    "language": "filtering.language:LanguageFilter",
    "classifier": "filtering.classifier:ClassifierFilter",
    "best_of_n": "filtering.best_of_n:BestOfNFilter",
}


def filter_class(kind: str) -> type[Filter]:
    """The class registered as ``kind`` (imported on first use)."""
    if kind not in FILTERS:
        raise ValueError(f"unknown filter {kind!r}; valid choices: {sorted(FILTERS)}")
    module, _, name = FILTERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["FILTERS", "Filter", "filter_class"]
