"""A cheap student distilled from LLM labels, out-of-fold predictions, and label issues by confident learning.

After TnT-LLM's phase 2 (Wan et al., 2024: LLM labels train a lightweight classifier that labels the corpus) and
CanDist: a TF-IDF + logistic-regression classifier (scikit-learn) is trained on the LLM's labels, weighted by the
LLM's confidence when there is one. Every row's ``student_label``/``student_confidence`` come from the fold that did
not train on it (k-fold cross-validation), so agreement with the LLM is not flattered; those out-of-fold probabilities
feed confident learning (Northcutt et al., 2021, cleanlab's ``find_label_issues``), which flags rows whose LLM label
is likely wrong (``label_issue``) and scores each label's quality. The final student, trained on every row, is saved
with skops (a format made for safe loading: only the scikit-learn and NumPy types listed here are loaded).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("tfidf_logreg",)
# What a saved student may contain; anything else in the file is refused, not loaded.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.")


@dataclass
class Distilled:
    """A trained student and its out-of-fold view of the rows it was trained on."""

    model: Any
    classes: list[str]
    student_labels: list[str]
    student_confidences: list[float]
    label_issues: list[bool]
    label_quality: list[float]
    folds: int


def build(kind: str = "tfidf_logreg", c: float = 1.0, ngram_max: int = 2, max_features: int = 200_000) -> Any:
    """An untrained student: word n-gram TF-IDF into multinomial logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if kind not in KINDS:
        raise ValueError(f"unknown student.kind {kind!r}; valid choices: {list(KINDS)}")
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True, max_features=max_features)),
            ("logreg", LogisticRegression(C=c, max_iter=2000)),
        ]
    )


def distill(
    texts: Sequence[str],
    labels: Sequence[str],
    weights: Sequence[float] | None = None,
    folds: int = 5,
    seed: int = 0,
    **options: Any,
) -> Distilled:
    """Train on (text, LLM label) rows; out-of-fold predictions and label issues for each row."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(labels)
    if len(counts) < 2:
        raise ValueError(f"a student needs at least 2 labels among the rows; found {sorted(counts)}")
    classes = sorted(counts)
    index = {label: i for i, label in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    sample_weight = None if weights is None else np.asarray(weights, dtype=float)
    # Each class in every training fold where it can be: no more folds than the rarest class has rows (at least 2).
    k = max(2, min(folds, min(counts.values())))
    oof = np.zeros((len(y), len(classes)))
    texts_array = np.asarray(texts, dtype=object)
    for train, held in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(texts_array, y):
        model = build(**options)
        fit = {} if sample_weight is None else {"logreg__sample_weight": sample_weight[train]}
        model.fit(texts_array[train], y[train], **fit)
        oof[np.ix_(held, model.classes_)] = model.predict_proba(texts_array[held])  # a class a fold lacks stays 0
    # One process: cleanlab's default forks a pool, which hangs or fails in a process holding Ray's threads.
    issues = find_label_issues(labels=y, pred_probs=oof, n_jobs=1)
    quality = get_label_quality_scores(labels=y, pred_probs=oof)
    final = build(**options)
    final.fit(texts_array, y, **({} if sample_weight is None else {"logreg__sample_weight": sample_weight}))
    best = oof.argmax(axis=1)
    return Distilled(
        model=final,
        classes=classes,
        student_labels=[classes[i] for i in best],
        student_confidences=[round(float(p), 4) for p in oof.max(axis=1)],
        label_issues=[bool(flag) for flag in issues],
        label_quality=[round(float(q), 4) for q in quality],
        folds=k,
    )


def predict(model: Any, classes: Sequence[str], texts: Sequence[str]) -> tuple[list[str], list[float]]:
    """Labels and top probabilities of a trained student for ``texts``."""
    if not texts:
        return [], []
    probabilities = model.predict_proba(np.asarray(texts, dtype=object))
    best = probabilities.argmax(axis=1)
    return [classes[model.classes_[i]] for i in best], [round(float(p), 4) for p in probabilities.max(axis=1)]


def dumps(model: Any) -> bytes:
    import skops.io

    return skops.io.dumps(model)


def loads(data: bytes) -> Any:
    """A student saved by ``dumps``; a file holding any type outside scikit-learn and NumPy is refused."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ValueError(f"the saved student holds types synthray does not load: {refused}")
    return skops.io.loads(data, trusted=untrusted)
