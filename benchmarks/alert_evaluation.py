"""The alert evaluator's CPU cost per bin emission: 100 rules on a 20-column model.

    python benchmarks/alert_evaluation.py [--repeats 7] [--emissions 20]

A binary model with 20 columns (10 numeric and 8 categorical inputs, a score, a label)
and a baseline; three weeks of hour bins of 200 events each, counted by the real bin
rules (``state.bins.bins_of``) and stored in the evaluator's RocksDB store by sending
them through it. Then one model-bins record at a time - the bins stage's own output for
the bin - goes through ``AlertEvaluator.handle`` and the store's atomic write
(``ProcessorDriver.send``), for two bins:

- an ended hour (a Saturday of the last full week) re-emitted as its late labels arrive:
  every rule's hour, day and week holding it can be judged, so this is the full cost of
  evaluating them (the cost a tick pays too, when a deferred period comes due);
- the hour still going on, re-emitted as its events arrive: nothing can be judged yet, so
  every period is only noted as due.

Each emission alternates between two versions of the bin (late labels, or more events,
in one ingest partition's share), so the alerts' records change as they would. The bins
stage's own cost for the same emission (``BinTotalsProcessor`` summing 8 partitions'
shares, computing the bin's metrics and encoding it) is given for scale.

Rules: 100 of them cycling through drift (psi, js_distance on every column), integrity
rates (absolute and relative to the baseline), performance (with evaluation delays) and
traffic (relative to 1, 24 and 168 hours back), every one on hour bins, or with a fifth
of them on day bins and a tenth on week bins; against one psi rule on every column.

Times are CPU time of this process (``time.process_time``), as in
``benchmarks/handlers.py``: on a 2-core machine shared with other work, wall-clock
varies too much. The configurations take turns within each repeat (so that a busy
moment of the machine does not fall on one of them only), and the median of the
repeats is shown, with the lowest and highest.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driftline.agents.alert_evaluator import AlertEvaluator
from driftline.agents.bin_totals import BinTotalsProcessor
from driftline.agents.driver import Input, ProcessorDriver
from driftline.agents.runtime import Outgoing, tune_garbage_collector
from driftline.state.alert_rules import AlertRule
from driftline.state.alerts import Alert
from driftline.state.baseline import profile_baseline
from driftline.state.bin_totals import Share
from driftline.state.bins import BIN_KEY, HOUR_MS, ContributionRules, Counters, add_into, bins_of
from driftline.state.events import StoredEvent
from driftline.state.metrics import bin_metrics
from driftline.state.partition_tables import ALERTS
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.tables import TEXT, PartitionTransaction
from driftline.topics.alert_rules import AlertRuleIndex
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial
from driftline.topics.metric_bins import metrics_value
from driftline.topics.model_bins import MODEL_BIN, ModelBin

NUMBERS = [f"n{i}" for i in range(10)]
CATEGORIES = [f"c{i}" for i in range(8)]
VOCABULARY = ["a", "b", "c", "d", "e"]
SPEC = {
    "project_id": "bench",
    "model_id": "alerts",
    "inputs": NUMBERS + CATEGORIES,
    "outputs": ["score"],
    "targets": ["label"],
    "task": "binary_classification",
    "column_types": {
        **dict.fromkeys(NUMBERS, "float"),
        **dict.fromkeys(CATEGORIES, "category"),
        "score": "float",
    },
}
MODEL = "bench/alerts"
EVENTS_PER_HOUR = 200
PARTITIONS = 8  # ingest partitions, each with its share of a bin
# A Monday 00:00 UTC (hours since the epoch): days and weeks start with it.
MONDAY = 490_152
# Three whole weeks of hours, then the first three hours of the fourth.
HISTORY = range(MONDAY, MONDAY + 3 * 168 + 3)
ENDED_HOUR = MONDAY + 2 * 168 + 5 * 24 + 10  # Saturday 10:00 of the third week
OPEN_HOUR = HISTORY[-1]
NOW_MS = OPEN_HOUR * HOUR_MS + HOUR_MS // 2


def registered_model() -> RegisteredModel:
    spec = ModelSpec.from_dict(SPEC)
    return RegisteredModel(spec, profile_baseline(spec, baseline_rows(random.Random(0))))


def baseline_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Baseline rows, with a few missing values (so that missing rates have a baseline)."""
    rows = []
    for _ in range(2000):
        row: dict[str, Any] = {name: rng.gauss(0, 1) for name in NUMBERS}
        row.update({name: rng.choice(VOCABULARY) for name in CATEGORIES})
        row["score"] = rng.random()
        if rng.random() < 0.2:
            row[rng.choice(NUMBERS + CATEGORIES)] = None
        rows.append(row)
    return rows


def hour_events(rng: random.Random, hour: int) -> list[StoredEvent]:
    """An hour's events, drifted a little from the baseline, all labelled; now and then a
    value missing, of the wrong type or a category the baseline has not seen."""
    events = []
    for i in range(EVENTS_PER_HOUR):
        columns: dict[str, Any] = {name: rng.gauss(0.05, 1.05) for name in NUMBERS}
        columns.update({name: rng.choice(VOCABULARY) for name in CATEGORIES})
        score = rng.random()
        columns.update(score=score, label=int(rng.random() < score))
        if rng.random() < 0.2:
            columns[rng.choice(NUMBERS + CATEGORIES)] = rng.choice([None, "oops", 7, "f"])
        timestamp = hour * HOUR_MS + i * (HOUR_MS // EVENTS_PER_HOUR)
        events.append(StoredEvent(f"h{hour}e{i}", timestamp, columns, timestamp + 2_000, i))
    return events


def unlabelled(event: StoredEvent) -> StoredEvent:
    return replace(event, columns={**event.columns, "label": None})


@dataclass(frozen=True)
class BinVersions:
    """One hour bin in two successive versions, as its ingest partitions' shares; they
    differ in partition 0's share only, as after one batch of that partition."""

    hour: int
    shares: list[Counters]
    # Partition 0's share in the second version.
    changed_share: Counters

    def version(self, number: int) -> list[Counters]:
        """Version ``number % 2`` of the shares."""
        return self.shares if number % 2 == 0 else [self.changed_share, *self.shares[1:]]

    def total(self) -> Counters:
        total: Counters = {}
        for share in self.shares:
            add_into(total, share)
        return total


def shares_of(rules: ContributionRules, events: Sequence[StoredEvent]) -> list[Counters]:
    """Each ingest partition's share of one hour's events (an event's partition: its
    number within the hour, modulo ``PARTITIONS``)."""
    hour = hour_of(events)
    parts: list[list[StoredEvent]] = [[] for _ in range(PARTITIONS)]
    for event in events:
        parts[event.applied_offset % PARTITIONS].append(event)
    return [bins_of({MODEL: rules}, ((MODEL, e) for e in part))[(MODEL, hour)] for part in parts]


def hour_of(events: Sequence[StoredEvent]) -> int:
    return events[0].timestamp_ms // HOUR_MS


def late_labels(rules: ContributionRules, events: list[StoredEvent]) -> BinVersions:
    """The ended hour: partition 0's labels arrive late (first without, then with)."""
    first = [unlabelled(e) if e.applied_offset % PARTITIONS == 0 else e for e in events]
    return BinVersions(hour_of(events), shares_of(rules, first), shares_of(rules, events)[0])


def more_events(rules: ContributionRules, events: list[StoredEvent]) -> BinVersions:
    """The open hour: labels still to come, and partition 0's latest events arriving."""
    waiting = [unlabelled(e) for e in events]
    fewer = [e for e in waiting if e.applied_offset % PARTITIONS or e.applied_offset < 100]
    return BinVersions(hour_of(events), shares_of(rules, fewer), shares_of(rules, waiting)[0])


# A rule's shape: metric, columns, comparison, direction, critical, warning, delay (hours).
Shape = tuple[str, Any, dict[str, Any], str, float, float | None, float]
ABSOLUTE: dict[str, Any] = {"kind": "absolute"}
TO_BASELINE: dict[str, Any] = {"kind": "relative_to_baseline"}


def to_past(bins_back: int) -> dict[str, Any]:
    return {"kind": "relative_to_past", "bins_back": bins_back}


SHAPES: list[Shape] = [
    ("psi",                  "all",             ABSOLUTE,     "greater", 0.5,  0.25,  0),
    ("events",               None,              to_past(1),   "lesser",  -0.5, -0.3,  0),
    ("js_distance",          "all",             ABSOLUTE,     "greater", 0.3,  0.25,  0),
    ("accuracy",             None,              ABSOLUTE,     "lesser",  0.6,  0.65,  2),
    ("missing_rate",         "all",             TO_BASELINE,  "greater", 2.0,  1.0,   0),
    ("events",               None,              to_past(24),  "lesser",  -0.5, -0.3,  0),
    ("type_mismatch_rate",   "all",             ABSOLUTE,     "greater", 0.05, 0.02,  0),
    ("auc",                  None,              ABSOLUTE,     "lesser",  0.6,  0.7,   2),
    ("range_violation_rate", "all",             ABSOLUTE,     "greater", 0.06, 0.03,  0),
    ("events",               None,              to_past(168), "lesser",  -0.5, -0.3,  0),
    ("psi",                  ["n0", "c0", "score"], to_past(24), "greater", 3.0, 2.0, 0),
    ("f1",                   None,              to_past(24),  "lesser",  -0.2, -0.1,  2),
    ("missing",              ["n1", "n2", "c1"], ABSOLUTE,    "greater", 10,   5,     0),
    ("labelled_share",       None,              ABSOLUTE,     "lesser",  0.3,  0.5,   0),
    ("log_loss",             None,              ABSOLUTE,     "greater", 0.8,  0.7,   2),
    ("mean_ingest_delay_ms", None,              ABSOLUTE,     "greater", 60_000, None, 0),
]  # fmt: skip


def rule_records(count: int, spec: ModelSpec, day_and_week: bool) -> list[dict[str, Any]]:
    """``count`` rules cycling through ``SHAPES``, thresholds loosened a little on every
    cycle; with ``day_and_week``, 2 in 10 on day bins and 1 in 10 on week bins (their
    look-back one bin of their size)."""
    records = []
    for number in range(count):
        metric, columns, comparison, direction, critical, warning, delay = SHAPES[
            number % len(SHAPES)
        ]
        cycle = number // len(SHAPES)
        bin_size = "hour"
        if day_and_week and number % 10 in (7, 8):
            bin_size = "day"
        elif day_and_week and number % 10 == 9:
            bin_size = "week"
        if bin_size != "hour" and comparison["kind"] == "relative_to_past":
            comparison = to_past(1)
        raw = {
            "rule_id": f"r{number:03}-{metric}",
            "project_id": "bench",
            "model_id": "alerts",
            "metric": metric,
            "columns": columns,
            "comparison": comparison,
            "direction": direction,
            "critical": loosened(critical, direction, cycle),
            "warning": None if warning is None else loosened(warning, direction, cycle),
            "bin": bin_size,
            "evaluation_delay_hours": delay,
        }
        records.append(AlertRule.from_dict(raw, spec).to_dict())
    return records


def loosened(threshold: float, direction: str, cycle: int) -> float:
    """The threshold moved ``cycle`` times 5 % away from breaching (so that the rules
    stay as quiet as their first cycle: most bins breach none)."""
    step = 0.05 * cycle * abs(threshold)
    return threshold + step if direction == "greater" else threshold - step


class InMemoryRules:
    """The rules topic as read so far (``AlertRuleIndex``), without a broker."""

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.index = AlertRuleIndex()
        for record in records:
            self.index.apply(f"bench/alerts/{record['rule_id']}", record)

    def catch_up(self, timeout_s: float = 10.0) -> None:
        return None

    def of_model(self, project_id: str, model_id: str, fresh: bool = True) -> list[dict[str, Any]]:
        return self.index.of_model(project_id, model_id)


def model_bin(registered: RegisteredModel, hour: int, counters: Counters) -> Input:
    """A model-bins record as the bins stage writes it: the whole bin with its metrics."""
    metrics = bin_metrics(registered.spec, registered.baseline, counters)
    value = metrics_value((MODEL, hour), 1, NOW_MS, counters, metrics)
    return Input(TEXT.encode(MODEL), MODEL_BIN.encode(ModelBin(hour, value)))


def snapshot(hour: int, partition: int, version: int, counters: Counters) -> Input:
    """A bin-partials record: one ingest partition's share of the bin."""
    value = BIN_PARTIAL.encode(BinPartial(partition, Share(version, counters)))
    return Input(BIN_KEY.encode((MODEL, hour)), value)


@dataclass
class Workload:
    """The model, the two bins timed, and every hour bin as the evaluator receives it."""

    registered: RegisteredModel
    # The bins timed, by name: "ended" and "open".
    bins: dict[str, BinVersions]
    # Every hour's model-bins record, the timed bins in their first version.
    history: list[Input]


def workload() -> Workload:
    registered = registered_model()
    rules = ContributionRules(registered.spec, registered.baseline)
    rng = random.Random(1)
    events = {hour: hour_events(rng, hour) for hour in HISTORY}
    bins = {
        "ended": late_labels(rules, events[ENDED_HOUR]),
        "open": more_events(rules, events[OPEN_HOUR]),
    }
    counters = {
        hour: bin_counters
        for (_, hour), bin_counters in bins_of(
            {MODEL: rules}, ((MODEL, e) for hour in HISTORY for e in events[hour])
        ).items()
    }
    counters.update({versions.hour: versions.total() for versions in bins.values()})
    history = [model_bin(registered, hour, counters[hour]) for hour in HISTORY]
    return Workload(registered, bins, history)


def bins_stage(work: Workload, path: Path) -> ProcessorDriver:
    """The bins stage with every partition's share of the timed bins, first version. Its
    emit interval is 0: each snapshot emits its bin, as one arriving after the bin's
    interval is over does (the clock stays, so that the open hour stays open)."""
    processor = BinTotalsProcessor(
        {MODEL: work.registered}.get, "metrics", "model-bins", 0.0, "dead"
    )
    driver = ProcessorDriver(processor, path, "bin-partials", now_ms=NOW_MS)
    for versions in work.bins.values():
        driver.send(snapshot(versions.hour, p, 1, s) for p, s in enumerate(versions.shares))
    return driver


def emitted_records(work: Workload, path: Path) -> dict[str, list[Input]]:
    """What the bins stage sends the evaluator for both versions of each timed bin."""
    driver = bins_stage(work, path)
    records = {}
    for name, versions in work.bins.items():
        versions_sent = [versions.version(0), versions.version(1)]
        records[name] = [
            model_bins_record(driver.send([snapshot(versions.hour, 0, 2 + n, shares[0])]))
            for n, shares in enumerate(versions_sent)
        ]
    driver.close()
    return records


def model_bins_record(outgoing: Sequence[Outgoing]) -> Input:
    (record,) = [out for out in outgoing if out.topic == "model-bins"]
    return Input(record.key, record.value)


def evaluator(work: Workload, rules: Sequence[dict[str, Any]], path: Path) -> ProcessorDriver:
    """An evaluator with ``rules``, every hour of the history sent through it a day at a
    time (its store holds their counters, and the alerts they raised)."""
    processor = AlertEvaluator({MODEL: work.registered}.get, InMemoryRules(rules), "alerts", "dead")
    driver = ProcessorDriver(processor, path, "model-bins", now_ms=NOW_MS)
    for start in range(0, len(work.history), 24):
        driver.send(work.history[start : start + 24])
    return driver


class Timed:
    """A processor's driver and the inputs it is timed on, taken in turn; ``run`` gives
    the CPU ms of one emission, averaged over ``emissions``."""

    def __init__(self, driver: ProcessorDriver, inputs: Callable[[int], Input]) -> None:
        self.driver = driver
        self.inputs = inputs
        self.sent = 0

    def run(self, emissions: int) -> float:
        seconds = 0.0
        for _ in range(emissions):
            sent = self.inputs(self.sent)
            self.sent += 1
            started = time.process_time()
            self.driver.send([sent])
            seconds += time.process_time() - started
        return seconds / emissions * 1000


def taking_turns(records: Sequence[Input]) -> Callable[[int], Input]:
    return lambda sent: records[sent % len(records)]


def share_versions(versions: BinVersions) -> Callable[[int], Input]:
    """Partition 0's share of the bin, a newer version each time, the two in turn."""
    return lambda sent: snapshot(versions.hour, 0, 10 + sent, versions.version(sent)[0])


def measured(
    cases: dict[tuple[str, str], Timed], repeats: int, emissions: int
) -> dict[tuple[str, str], list[float]]:
    """CPU ms per emission of each case, one sample per repeat; the cases take turns,
    each repeat starting one further, so that no case always follows the same one."""
    samples: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    order = list(cases)
    for repeat in range(repeats):
        shift = repeat % len(order)
        for case in order[shift:] + order[:shift]:
            samples[case].append(cases[case].run(emissions))
    return samples


BINS_STAGE = "bins stage (for scale)"
ONE_RULE = "evaluator, 1 rule (psi, all columns)"
HOUR_RULES = "evaluator, 100 rules, all hour bins"
MIXED_RULES = "evaluator, 100 rules, 70 hour/20 day/10 week"
BINS = {"ended": "ended hour, late labels", "open": "open hour, events arriving"}


def run(repeats: int, emissions: int, workdir: Path) -> None:
    tune_garbage_collector()  # as the worker's runners do
    work = workload()
    spec = work.registered.spec
    rule_sets = {
        ONE_RULE: rule_records(1, spec, day_and_week=False),
        HOUR_RULES: rule_records(100, spec, day_and_week=False),
        MIXED_RULES: rule_records(100, spec, day_and_week=True),
    }
    records = emitted_records(work, workdir / "emitted")
    drivers = {BINS_STAGE: bins_stage(work, workdir / "bins")}
    for name, rules in rule_sets.items():
        drivers[name] = evaluator(work, rules, workdir / name.replace(" ", "_"))
    cases = {}
    for bin_name, versions in work.bins.items():
        cases[(BINS_STAGE, bin_name)] = Timed(drivers[BINS_STAGE], share_versions(versions))
        for name in rule_sets:
            cases[(name, bin_name)] = Timed(drivers[name], taking_turns(records[bin_name]))
    kept = [alert for _, alert in PartitionTransaction(drivers[MIXED_RULES].store()).items(ALERTS)]
    try:
        samples = measured(cases, repeats, emissions)
    finally:
        for driver in drivers.values():
            driver.close()
    report(work, rule_sets[MIXED_RULES], kept, samples, repeats, emissions)


def report(
    work: Workload,
    rules: Sequence[dict[str, Any]],
    kept: Sequence[Alert],
    samples: dict[tuple[str, str], list[float]],
    repeats: int,
    emissions: int,
) -> None:
    """The workload, the alerts the mixed rules raised over the history (few: most
    (rule, column, bin) never fire in a healthy model, and a lookup that finds no alert
    costs less than one that decodes it), and the table."""
    spec = work.registered.spec
    parsed = [AlertRule.from_dict(rule, spec) for rule in rules]
    alerts = sum(len(rule.applies_to(spec)) for rule in parsed)
    per_column = sum(rule.columns is not None for rule in parsed)
    print(f"model:  {len(spec.inputs) + len(spec.outputs) + len(spec.targets)} columns "
          f"({len(NUMBERS)} numeric + {len(CATEGORIES)} categorical inputs, score, label), "
          f"{EVENTS_PER_HOUR} events/hour, {len(work.history)} hour bins stored")  # fmt: skip
    print(f"rules:  100 = {per_column} per column + {100 - per_column} per model: "
          f"{alerts} (rule, column) alerts per bin")  # fmt: skip
    print(f"        the mixed rules' store keeps {len(kept)} alerts raised over the history "
          f"({sum(alert.open for alert in kept)} open)")  # fmt: skip
    print(f"CPU ms per emission (handle + store write), median of {repeats} repeats "
          f"of {emissions} emissions [lowest-highest], and x the bins stage's")  # fmt: skip
    width = max(map(len, (BINS_STAGE, ONE_RULE, HOUR_RULES, MIXED_RULES)))
    print(" " * width + "".join(f"  {title:>34}" for title in BINS.values()))
    medians = {case: statistics.median(found) for case, found in samples.items()}
    for name in (BINS_STAGE, ONE_RULE, HOUR_RULES, MIXED_RULES):
        cells = []
        for bin_name in BINS:
            found = samples[(name, bin_name)]
            ratio = medians[(name, bin_name)] / medians[(BINS_STAGE, bin_name)]
            cells.append(f"{medians[(name, bin_name)]:7.2f} [{min(found):.2f}-{max(found):.2f}]"
                         f" {ratio:6.1f}x")  # fmt: skip
        print(f"{name:<{width}}" + "".join(f"  {cell:>34}" for cell in cells))
    for bin_name, title in BINS.items():
        extra = medians[(HOUR_RULES, bin_name)] - medians[(ONE_RULE, bin_name)]
        print(f"each hour rule beyond the first, {title}: {extra / 99 * 1000:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--emissions", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-alerts-") as tmp:
        run(args.repeats, args.emissions, Path(tmp))


if __name__ == "__main__":
    main()
