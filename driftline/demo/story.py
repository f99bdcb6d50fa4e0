"""The demo's story as pure functions: a tumour classifier, two days of its traffic with an
incident midway, and the hour each label comes back.

The model is a logistic regression trained on scikit-learn's bundled breast cancer data
set (Wisconsin diagnostic: 569 biopsies, 30 measurements of cell nuclei; six are used).
Its traffic is drawn from the biopsies it was not trained on. Midway, for an eighth of the
hours, the scanner's size calibration slips (radii read 50% high, areas with their
square): the inputs drift and the model, fed wrong sizes, calls benign tumours malignant.
The ground truth (the pathology report) comes back one to eight hours after each
prediction, each label on its own delay, so labels of different hours arrive mixed.

Nothing here touches Driftline: the traffic is plain rows, readable and testable apart
from the pipeline that monitors it.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from driftline.state.bins import HOUR_MS

PROJECT, MODEL = "demo", "tumours"
TARGET, SCORE = "malignant", "score"
# The data set's measurements the model reads, under the names its spec gives them.
FEATURES = {
    "mean radius": "mean_radius",
    "mean texture": "mean_texture",
    "mean smoothness": "mean_smoothness",
    "mean concavity": "mean_concavity",
    "worst texture": "worst_texture",
    "worst area": "worst_area",
}
# The incident: what the slipped calibration multiplies each size measurement by.
MISCALIBRATION = {"mean_radius": 1.5, "worst_area": 1.5**2}
# How many hours after its prediction a label comes back, and how often (relative
# weights): most within two to five hours, a few on the first hour, so that an hour's
# first labels are few (a performance alert may fire on them, which the rest clear).
LABEL_DELAY_WEIGHTS = {1: 1, 2: 3, 3: 4, 4: 3, 5: 2, 6: 1, 7: 1, 8: 1}


@dataclass(frozen=True)
class Shape:
    """How much traffic the story streams: ``hours`` hour bins of ``events_per_hour``."""

    hours: int = 48
    events_per_hour: int = 120

    @property
    def incident_hours(self) -> range:
        """The hours (from 0) the calibration incident lasts: an eighth of them, midway."""
        start = self.hours // 2
        return range(start, start + max(1, self.hours // 8))

    @property
    def steps(self) -> int:
        """Simulated hours the stream lasts: the traffic's, then until the last label."""
        return self.hours + max(LABEL_DELAY_WEIGHTS)


def model_spec() -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "model_id": MODEL,
        "inputs": list(FEATURES.values()),
        "outputs": [SCORE],
        "targets": [TARGET],
        "task": "binary_classification",
    }


@dataclass(frozen=True)
class Classifier:
    """The trained model, the rows it was trained on (with its scores: the baseline drift
    is measured against) and the biopsies it never saw (the traffic's source)."""

    pipeline: Any
    baseline: list[dict[str, float]]
    unseen: pd.DataFrame


def train_classifier(seed: int) -> Classifier:
    data = load_breast_cancer(as_frame=True)
    features = data.data[list(FEATURES)].rename(columns=FEATURES)
    malignant = 1 - data.target  # the data set calls benign 1
    train_x, test_x, train_y, test_y = train_test_split(
        features, malignant, test_size=0.4, random_state=seed, stratify=malignant
    )
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(train_x, train_y)
    return Classifier(pipeline, scored(pipeline, train_x), test_x.assign(**{TARGET: test_y}))


def scored(pipeline: Any, features: pd.DataFrame) -> list[dict[str, float]]:
    """Each row's inputs with the probability of malignancy the model gives it."""
    scores = pipeline.predict_proba(features)[:, 1]
    return [
        {**{str(name): float(value) for name, value in row.items()}, SCORE: round(float(score), 4)}
        for row, score in zip(features.round(4).to_dict("records"), scores, strict=True)
    ]


def miscalibrated(features: pd.DataFrame) -> pd.DataFrame:
    """The measurements as the slipped scanner reports them."""
    return features.assign(
        **{column: features[column] * factor for column, factor in MISCALIBRATION.items()}
    )


@dataclass(frozen=True)
class Event:
    """One prediction: what is published at once, and the truth that comes back later."""

    event_id: str
    hour: int
    timestamp_ms: int
    row: Mapping[str, float]
    truth: int

    def published(self) -> dict[str, Any]:
        """The event as the model service publishes it: no label yet."""
        return {"event_id": self.event_id, "timestamp": self.timestamp_ms, **self.row,
                TARGET: None}  # fmt: skip

    def label(self) -> dict[str, Any]:
        return {"event_id": self.event_id, TARGET: self.truth}


def traffic(classifier: Classifier, shape: Shape, first_hour_ms: int, seed: int) -> list[Event]:
    """``shape.events_per_hour`` predictions in each hour from ``first_hour_ms``, on unseen
    biopsies (drawn with replacement), miscalibrated during the incident."""
    rng = random.Random(seed)
    events: list[Event] = []
    for hour in range(shape.hours):
        sample = classifier.unseen.sample(
            shape.events_per_hour, replace=True, random_state=rng.randrange(2**32)
        )
        features = sample[list(FEATURES.values())]
        if hour in shape.incident_hours:
            features = miscalibrated(features)
        rows = scored(classifier.pipeline, features)
        for number, (row, truth) in enumerate(zip(rows, sample[TARGET], strict=True)):
            at_ms = first_hour_ms + hour * HOUR_MS + rng.randrange(HOUR_MS)
            events.append(Event(f"h{hour:02d}-{number:04d}", hour, at_ms, row, int(truth)))
    return events


def label_arrivals(events: list[Event], seed: int) -> dict[int, list[Event]]:
    """The events whose label comes back in each simulated hour, in the order the labels
    arrive: shuffled, so that labels of different hours come mixed."""
    rng = random.Random(seed)
    delays, weights = list(LABEL_DELAY_WEIGHTS), list(LABEL_DELAY_WEIGHTS.values())
    arrivals: defaultdict[int, list[Event]] = defaultdict(list)
    for event in events:
        arrivals[event.hour + rng.choices(delays, weights)[0]].append(event)
    for arriving in arrivals.values():
        rng.shuffle(arriving)
    return dict(arrivals)


# The alert rules: the drift of the radius the incident inflates, and the accuracy. A PSI
# of 0.25 is the usual "shifted", but 120 events an hour (and fewer, in a bin emitted
# before all of its hour is counted) read that much by chance: the incident's hours read
# about 2, the others below 0.75.
DRIFT_RULE, ACCURACY_RULE = "radius-drift", "accuracy"
DRIFT_COLUMN = "mean_radius"
PSI_CRITICAL, ACCURACY_CRITICAL = 1.0, 0.8


def alert_rules(channel: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Hourly rules, judged as soon as a bin is emitted (no evaluation delay), so that the
    accuracy alert follows the labels as they come back; both notify ``channel``."""
    common = {"project_id": PROJECT, "model_id": MODEL, "comparison": {"kind": "absolute"},
              "bin": "hour", "evaluation_delay_hours": 0, "channels": [dict(channel)]}  # fmt: skip
    return [
        {**common, "rule_id": DRIFT_RULE, "metric": "psi", "columns": [DRIFT_COLUMN],
         "direction": "greater", "critical": PSI_CRITICAL},
        {**common, "rule_id": ACCURACY_RULE, "metric": "accuracy", "direction": "lesser",
         "critical": ACCURACY_CRITICAL},
    ]  # fmt: skip
