"""The pure part of ``GET /v1/alerts`` (api/alerts.py): reading its query, and the cursors
that carry a listing from page to page."""

from __future__ import annotations

from typing import Any

import pytest

from driftline.api.alerts import DEFAULT_ALERTS, AlertListQuery, parse_alert_list
from driftline.api.requests import RequestError
from driftline.state.periods import Period
from driftline.topics.alerts import AlertSelection, AlertStateFilter
from tests.support.models import HOUR0

MODEL = [("project_id", "shop"), ("model_id", "churn")]


def parsed(*items: tuple[str, str]) -> AlertListQuery:
    return parse_alert_list([*MODEL, *items])


def refused(*items: tuple[str, str], model: Any = MODEL) -> str:
    with pytest.raises(RequestError) as raised:
        parse_alert_list([*model, *items])
    assert raised.value.status == 400
    return raised.value.message


def test_the_model_alone_lists_every_alert_a_page() -> None:
    assert parsed() == AlertListQuery(AlertSelection("shop", "churn"), DEFAULT_ALERTS)


def test_every_filter() -> None:
    query = parsed(
        ("state", "open"),
        ("rule_id", "drift-age"),
        ("bin", "day"),
        ("start", str(HOUR0)),
        ("end", "2025-12-01T00:00:00Z"),
        ("limit", "7"),
    )
    assert query.selection == AlertSelection(
        "shop", "churn", AlertStateFilter.OPEN, "drift-age", Period.DAY, HOUR0, 1764547200000
    )
    assert query.limit == 7
    assert parsed(("state", "resolved")).selection.state is AlertStateFilter.RESOLVED
    assert parsed(("end", str(HOUR0))).selection.end_ms == HOUR0


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ((("state", "firing"),), "'state' must be one of open, resolved, all; got \"firing\""),
        ((("rule_id", "no spaces"),), "rule_id must be 1 to 64 characters"),
        ((("bin", "month"),), "'bin' must be one of hour, day, week"),
        ((("start", "yesterday"),), "start"),
        ((("start", str(HOUR0)), ("end", str(HOUR0))), "start must be before end"),
        ((("limit", "0"),), "'limit' must be between 1 and 1,000"),
        ((("limit", "ten"),), "'limit' must be an integer"),
        ((("cursor", "nonsense"),), "'cursor' is not one this API gave"),
        ((("sate", "open"),), "'sate'"),
        ((("state", "open"), ("state", "all")), "given twice"),
    ],
)
def test_bad_parameters_say_what_to_change(items: tuple[tuple[str, str], ...], words: str) -> None:
    assert words in refused(*items)


def test_the_model_is_required() -> None:
    assert "'model_id'" in refused(model=[("project_id", "shop")])
    assert "'project_id'" in refused(model=[("project_id", "a/b"), ("model_id", "churn")])


def test_a_cursor_goes_on_with_its_own_selection_whatever_the_page_size() -> None:
    first = parsed(("state", "open"))
    position = (-490_000, "drift-age", "age", "shop/churn/drift-age/hour/490000/age")
    cursor = first.cursor_after(position)
    following = parsed(("state", "open"), ("limit", "5"), ("cursor", cursor))
    assert (following.selection, following.after, following.limit) == (
        first.selection, position, 5,
    )  # fmt: skip
    assert "belongs to another listing" in refused(("state", "all"), ("cursor", cursor))
    assert "belongs to another listing" in refused(("cursor", cursor))
