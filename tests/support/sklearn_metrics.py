"""The churn model's binary performance metrics as scikit-learn computes them on rows: the
independent computation ``GET /v1/metrics`` is checked against, for hour, day and week
bins alike."""

from __future__ import annotations

from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

THRESHOLD = 0.5  # the churn model's (CHURN_SPEC leaves the default)


def expected_performance(scores: list[float], labels: list[int]) -> dict[str, float]:
    """scikit-learn on the bin's rows, for the metrics whose denominator is not zero (AUC
    apart: the bins compute it from score histograms, within 1e-3)."""
    predicted = [int(s >= THRESHOLD) for s in scores]
    negatives = [p for p, y in zip(predicted, labels, strict=True) if y == 0]
    expected = {
        "accuracy": accuracy_score(labels, predicted),
        "log_loss": log_loss(labels, scores, labels=[0, 1]),
    }
    if any(predicted):
        expected["precision"] = precision_score(labels, predicted)
    if any(labels):
        expected["recall"] = recall_score(labels, predicted)
    if any(predicted) or any(labels):
        expected["f1"] = f1_score(labels, predicted)
    if negatives:
        expected["false_positive_rate"] = sum(negatives) / len(negatives)
    return expected
