"""Filters (one small class each), their registry and the filter stage that applies them in order."""

from filtering.base import Filter
from filtering.classifier import ClassifierFilter
from filtering.decontamination import DecontaminationFilter
from filtering.echo import EchoFilter
from filtering.exact_dedup import ExactDedupFilter
from filtering.fineweb import FineWebQualityFilter
from filtering.gopher import GopherQualityFilter, GopherRepetitionFilter
from filtering.language import LanguageFilter
from filtering.length import LengthFilter
from filtering.near_dedup import NearDedupFilter
from filtering.novelty import NoveltyFilter
from filtering.pii import PIIRedactor
from filtering.refusal import RefusalFilter
from filtering.schema import SchemaFilter
from filtering.threshold import ThresholdFilter

FILTERS: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (
        LengthFilter,
        RefusalFilter,
        EchoFilter,
        ExactDedupFilter,
        NearDedupFilter,
        PIIRedactor,
        ThresholdFilter,
        SchemaFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        DecontaminationFilter,
        NoveltyFilter,
        FineWebQualityFilter,
        LanguageFilter,
        ClassifierFilter,
    )
}

__all__ = ["FILTERS", "Filter"]
