"""The pure parts of the alert-rule routes (api/alert_rules.py) and of their topic
(topics/alert_rules.py): reading a request, masking secrets, the records by key."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from driftline.api.alert_rules import (
    MASK,
    body_at_path,
    masked,
    parse_rule,
    parse_rule_list,
    rule_model,
    rule_path,
)
from driftline.api.requests import RequestError
from driftline.state.alert_rules import AlertRule, rule_key
from driftline.state.spec import ModelSpec
from driftline.topics.alert_rules import ALERT_RULE, AlertRuleIndex
from tests.support.alert_rules import WEBHOOK_SECRET, drift_rule
from tests.support.models import CHURN_SPEC

SPEC = ModelSpec.from_dict(CHURN_SPEC)


def refusal(action: Any) -> RequestError:
    with pytest.raises(RequestError) as raised:
        action()
    return raised.value


def test_a_rule_body_names_its_model() -> None:
    assert rule_model(drift_rule()) == ("shop", "churn")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([drift_rule()], "JSON object"),
        (drift_rule(project_id=None), "'project_id' must be a non-empty string"),
        (drift_rule(model_id="a/b"), "'model_id' must be a non-empty string without '/'"),
    ],
)
def test_a_body_that_names_no_model_is_a_400(body: Any, words: str) -> None:
    error = refusal(lambda: rule_model(body))
    assert error.status == 400
    assert words in error.message


def test_a_valid_body_is_the_rule_model_s_rule() -> None:
    rule = parse_rule(drift_rule(), SPEC)
    assert rule == AlertRule.from_dict(drift_rule(), SPEC)
    assert rule.key == "shop/churn/drift-age"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"metric": "nonsense"}, "metric"),
        ({"columns": ["height"]}, "height"),
        ({"warning": 0.5}, "warning"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_an_invalid_rule_is_a_400_with_the_rule_model_s_message(
    changes: dict[str, Any], words: str
) -> None:
    error = refusal(lambda: parse_rule(drift_rule(**changes), SPEC))
    assert error.status == 400
    assert words in error.message


def test_a_put_body_takes_the_path_s_names_it_leaves_out() -> None:
    body = {k: v for k, v in drift_rule().items() if k not in {"project_id", "rule_id"}}
    assert body_at_path(body, "shop", "churn", "drift-age") == drift_rule()


def test_a_put_body_may_not_rename_its_rule() -> None:
    error = refusal(lambda: body_at_path(drift_rule(), "shop", "churn", "other"))
    assert error.status == 400
    assert 'rule_id "drift-age" is not the path\'s "other"' in error.message


def test_a_put_body_must_be_an_object() -> None:
    assert refusal(lambda: body_at_path(["x"], "shop", "churn", "r")).status == 400


def test_listing_needs_project_and_model() -> None:
    assert parse_rule_list([("project_id", "shop"), ("model_id", "churn")]) == ("shop", "churn")
    assert "'model_id'" in refusal(lambda: parse_rule_list([("project_id", "shop")])).message
    unknown = refusal(lambda: parse_rule_list([("project_id", "s"), ("model_id", "m"), ("x", "")]))
    assert "'x'" in unknown.message


def test_answers_mask_every_channel_credential() -> None:
    channels = [
        {"type": "webhook", "url": "https://a.example", "secret": WEBHOOK_SECRET},
        {"type": "pagerduty", "url": "https://b.example", "routing_key": "R0UT1NG"},
        {"type": "slack", "url": "https://c.example"},
    ]
    record = parse_rule(drift_rule(channels=channels), SPEC).to_dict()
    shown = masked(record)
    assert [c.get("secret") for c in shown["channels"]] == [MASK, None, None]
    assert [c.get("routing_key") for c in shown["channels"]] == [None, MASK, None]
    assert [c["url"] for c in shown["channels"]] == [c["url"] for c in channels]
    assert record["channels"][0]["secret"] == WEBHOOK_SECRET  # the stored rule keeps it
    assert {k: v for k, v in shown.items() if k != "channels"} == {
        k: v for k, v in record.items() if k != "channels"
    }


def test_a_rule_s_path_encodes_each_name() -> None:
    assert rule_path("a b", "m%", "r.1") == "/v1/alert-rules/a%20b/m%25/r.1"


def test_the_topic_record_round_trips_the_rule() -> None:
    rule = parse_rule(drift_rule(), SPEC)
    record = ALERT_RULE.decode(ALERT_RULE.encode(rule.to_dict()))
    assert AlertRule.from_dict(record, SPEC) == rule


@pytest.mark.parametrize("raw", [b"[]", b'{"rule_id": "r"}'])
def test_a_foreign_record_is_not_a_rule(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not an alert rule record"):
        ALERT_RULE.decode(raw)


def test_a_record_that_is_not_json_is_a_value_error_the_view_skips() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        ALERT_RULE.decode(b"not json")


def test_the_index_lists_a_model_s_rules_by_id_and_forgets_tombstoned_ones() -> None:
    index = AlertRuleIndex()
    for rule_id, model_id in [("b", "churn"), ("a", "churn"), ("a", "churn2")]:
        record = drift_rule(rule_id=rule_id, model_id=model_id)
        index.apply(f"shop/{model_id}/{rule_id}", record)
    assert [r["rule_id"] for r in index.of_model("shop", "churn")] == ["a", "b"]
    index.apply("shop/churn/a", None)
    assert [r["rule_id"] for r in index.of_model("shop", "churn")] == ["b"]
    assert index.get("shop/churn/a") is None
    assert index.get("shop/churn2/a") == drift_rule(rule_id="a", model_id="churn2")


def test_the_index_keeps_a_deleted_rule_s_last_record_for_its_resolutions() -> None:
    index = AlertRuleIndex()
    index.apply("shop/churn/a", drift_rule(rule_id="a"))
    index.apply("shop/churn/a", None)
    assert index.get("shop/churn/a") is None
    assert index.last("shop/churn/a") == drift_rule(rule_id="a")
    index.apply("shop/churn/a", drift_rule(rule_id="a", critical=0.5))
    assert index.last("shop/churn/a") == index.get("shop/churn/a")
    assert index.last("shop/churn/never") is None


def test_a_rule_s_key_from_its_names_is_the_rule_s_own() -> None:
    assert rule_key("shop", "churn", "drift-age") == parse_rule(drift_rule(), SPEC).key
