"""Checks that a refined caption does not give the label away.

- ``lexicon_flags``: emotion words or phrases still in the text (``lexicon:<word>``).
- ``text_classifier``: TF-IDF + logistic regression trained on refined captions alone, scored with stratified
  cross-validation (fixed seed). Its accuracy and UAR against chance say how much label information the captions of
  a dataset carry. Facial-action text is *meant* to carry some (raised brows go with surprise), so these numbers are
  information for the reviewer, not a pass/fail test.
- ``leakage_score`` of a row: p = the cross-validated probability the classifier gives the row's true label, prior =
  that label's share of the scored rows (what a classifier that learnt nothing outputs);
  score = clip((p - prior) / (1 - prior), 0, 1). 0 = the caption tells no more than the class frequencies,
  1 = the caption alone names the label with certainty. Rows without a label or text, or when the classifier cannot
  run (fewer than two classes with two captions each), score 0.
- ``counterfactual_agreement``: for captions generated with the label in the prompt (``label_hint: paper``), the
  caption of the same clip generated with a different label should describe the same face; low agreement means
  the text follows the label, not the video.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from stages.refine.lexicon import Lexicon, content_words, emotion_hits

_TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"


def lexicon_flags(text: str, lexicon: Lexicon) -> list[str]:
    return [hit.flag for hit in emotion_hits(text, lexicon)]


def counterfactual_agreement(caption_true_label: str, caption_other_label: str, stopwords: Iterable[str] = ()) -> float:
    """Jaccard overlap of the stemmed content words of two captions of one clip (1 = same words; 1 if both empty)."""
    stop = frozenset(stopwords)
    a, b = set(content_words(caption_true_label, stop)), set(content_words(caption_other_label, stop))
    return 1.0 if not a and not b else len(a & b) / len(a | b)


@dataclass
class ClassifierResult:
    status: str  # "ok" or "skipped: <why>"
    scores: np.ndarray  # leakage_score per input row
    n: int = 0  # rows scored
    folds: int = 0
    classes: int = 0
    accuracy: float | None = None
    uar: float | None = None
    chance_accuracy: float | None = None  # share of the most frequent class
    chance_uar: float | None = None  # 1 / classes
    per_class_recall: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {key: getattr(self, key) for key in ("status", "n", "folds", "classes", "accuracy", "uar",
                                                     "chance_accuracy", "chance_uar", "per_class_recall")}


def text_classifier(texts: Sequence[str], labels: Sequence[str | int | None], folds: int = 5, seed: int = 0,
                    stopwords: Iterable[str] = ()) -> ClassifierResult:
    """Cross-validated text-only label prediction; see the module docstring for the leakage score."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, recall_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    scores = np.zeros(len(texts), dtype=np.float32)
    usable = [i for i, (t, y) in enumerate(zip(texts, labels)) if y is not None and t and t.strip()]
    counts = Counter(labels[i] for i in usable)
    rows = [i for i in usable if counts[labels[i]] >= 2]
    classes = sorted({labels[i] for i in rows})
    n_splits = min([folds] + [counts[c] for c in classes])
    if len(classes) < 2 or n_splits < 2:
        return ClassifierResult("skipped: needs two classes with at least two non-empty captions each", scores)
    x = [texts[i] for i in rows]
    y = np.array([labels[i] for i in rows])
    model = make_pipeline(
        TfidfVectorizer(stop_words=sorted(set(stopwords)) or None, token_pattern=_TOKEN_PATTERN,
                        ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(max_iter=2000),
    )
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    try:
        proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")
    except ValueError as err:  # e.g. every word is a stopword: empty vocabulary
        return ClassifierResult(f"skipped: {err}", scores)
    column = {c: k for k, c in enumerate(classes)}
    truth = np.array([column[c] for c in y])
    predicted = np.array(classes)[proba.argmax(axis=1)]
    prior = np.array([counts[c] for c in classes], dtype=float) / len(rows)
    p_true = proba[np.arange(len(rows)), truth]
    scores[rows] = np.clip((p_true - prior[truth]) / (1.0 - prior[truth]), 0.0, 1.0)
    recall = recall_score(y, predicted, labels=classes, average=None, zero_division=0.0)
    return ClassifierResult(
        status="ok", scores=scores, n=len(rows), folds=n_splits, classes=len(classes),
        accuracy=float((predicted == y).mean()), uar=float(balanced_accuracy_score(y, predicted)),
        chance_accuracy=float(prior.max()), chance_uar=1.0 / len(classes),
        per_class_recall={str(c): float(r) for c, r in zip(classes, recall)},
    )
