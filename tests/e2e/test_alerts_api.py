"""Alerts over REST, the client and the CLI, on the real broker: records produced straight
to the test's alerts topic (as the evaluator publishes them) are listed newest bin first,
filtered by state, rule, bin size and bin start, paged with cursors that neither repeat
nor skip an alert fired meanwhile; scopes, unknown models and bad parameters refused."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.client import ApiError
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.alert_evaluation import Severity
from driftline.state.alerts import Alert
from driftline.state.bins import HOUR_MS
from driftline.state.periods import Period
from driftline.topics.catalog import Topics
from driftline.topics.producer import CheckedProducer
from tests.support.alerts import churn_alert
from tests.support.api import StartApi, call, client_for, register, token_for
from tests.support.models import HOUR0

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

OK, WARNING, CRITICAL = Severity.OK, Severity.WARNING, Severity.CRITICAL
# Newest bin first, then rule, then column: the order every listing shows them in.
ESCALATED = churn_alert(WARNING, CRITICAL, column="age", hours_after=3)
RESOLVED = churn_alert(WARNING, OK, column="plan", hours_after=3)
FIRED = churn_alert(CRITICAL, column="age", hours_after=1)
DAILY_RESOLVED = churn_alert(CRITICAL, OK, rule_id="daily", period=Period.DAY)
ALL = [ESCALATED, RESOLVED, FIRED, DAILY_RESOLVED]


def publish(settings: Settings, *alerts: Alert) -> None:
    """Records on the test's alerts topic, keyed and encoded as the evaluator writes them."""
    topic = Topics.for_settings(settings).alerts
    producer = CheckedProducer(settings.bootstrap_servers)
    for alert in alerts:
        producer.produce(topic.name, topic.key.encode(alert.key), topic.value.encode(alert))
    producer.flush(30.0)


def listing(api: ApiProcess, token: str | None, **query: Any) -> Any:
    """``GET /v1/alerts`` for the churn model with ``query``, as an Answer."""
    names = {"project_id": "shop", "model_id": "churn", **query}
    return call(api, "GET", f"/v1/alerts?{urllib.parse.urlencode(names)}", token=token)


def shown(*alerts: Alert) -> list[dict[str, Any]]:
    return [alert.to_dict() for alert in alerts]


@pytest.fixture
def api(settings: Settings, start_api: StartApi) -> ApiProcess:
    """An API (which creates the topics), the churn model, and its alerts published (an
    older record of one first: the newest wins)."""
    started = start_api(settings)
    register(settings)
    publish(settings, churn_alert(WARNING, column="age", hours_after=3), *reversed(ALL))
    return started


def test_listed_newest_bin_first_and_filtered(api: ApiProcess) -> None:
    token = token_for(api, "shop")
    everything = listing(api, token)
    assert everything.status == 200, everything.body
    assert everything.body == {"project_id": "shop", "model_id": "churn",
                               "alerts": shown(*ALL), "next_cursor": None}  # fmt: skip
    first = everything.body["alerts"][0]
    assert (first["severity"], first["open"], first["value"], first["threshold"]) == (
        "critical", True, 0.4, 0.25,
    )  # fmt: skip
    assert [change["change"] for change in first["changes"]] == ["fired", "escalated"]

    filtered = {
        "open": ({"state": "open"}, [ESCALATED, FIRED]),
        "resolved": ({"state": "resolved"}, [RESOLVED, DAILY_RESOLVED]),
        "one rule": ({"rule_id": "daily"}, [DAILY_RESOLVED]),
        "no such rule": ({"rule_id": "nope"}, []),
        "hour bins": ({"bin": "hour", "state": "resolved"}, [RESOLVED]),
        "bin start": ({"start": HOUR0 + HOUR_MS, "end": HOUR0 + 2 * HOUR_MS}, [FIRED]),
        "from": ({"start": "2025-11-24T18:00:00Z"}, [ESCALATED, RESOLVED]),
    }
    for what, (query, expected) in filtered.items():
        answer = listing(api, token, **query)
        assert answer.status == 200, (what, answer.body)
        assert answer.body["alerts"] == shown(*expected), what


def test_pages_follow_their_cursor_without_repeats_or_gaps(
    settings: Settings, api: ApiProcess
) -> None:
    token = token_for(api, "shop")
    first = listing(api, token, limit=3)
    assert first.body["alerts"] == shown(ESCALATED, RESOLVED, FIRED)
    cursor = first.body["next_cursor"]
    assert cursor is not None
    # Fired between two pages, on the newest bin: the next page goes on where it was.
    newest = churn_alert(WARNING, column="age", hours_after=9)
    publish(settings, newest)
    second = listing(api, token, limit=3, cursor=cursor)
    assert second.body == {"project_id": "shop", "model_id": "churn",
                           "alerts": shown(DAILY_RESOLVED), "next_cursor": None}  # fmt: skip
    assert listing(api, token, limit=1).body["alerts"] == shown(newest)

    foreign = listing(api, token, state="open", cursor=cursor)
    assert foreign.status == 400
    assert "belongs to another listing" in foreign.body["error"]


def test_refusals_say_what_to_change(api: ApiProcess) -> None:
    token = token_for(api, "shop")
    for query, words in [
        ({"state": "firing"}, "'state' must be one of open, resolved, all"),
        ({"bin": "month"}, "'bin' must be one of hour, day, week"),
        ({"start": HOUR0, "end": HOUR0}, "start must be before end"),
        ({"limit": 0}, "'limit' must be between 1 and 1,000"),
        ({"cursor": "nonsense"}, "'cursor' is not one this API gave"),
        ({"sate": "open"}, "'sate'"),
    ]:
        answer = listing(api, token, **query)
        assert answer.status == 400, (query, answer.body)
        assert words in answer.body["error"], (query, answer.body)
    unknown = call(api, "GET", "/v1/alerts?project_id=shop&model_id=nope", token=token)
    assert unknown.status == 404
    assert "shop/nope is not registered" in unknown.body["error"]
    assert listing(api, token_for(api, "elsewhere")).status == 403
    assert listing(api, None).status == 401
    assert listing(api, token_for(api)).status == 200


def test_client_and_cli(settings: Settings, api: ApiProcess) -> None:
    token = token_for(api, "shop")
    with client_for(api, token) as client:
        assert client.get_alerts("shop", "churn") == shown(*ALL)
        assert client.get_alerts("shop", "churn", state="open") == shown(ESCALATED, FIRED)
        assert client.get_alerts("shop", "churn", limit=2) == shown(ESCALATED, RESOLVED)
        day_before = {"start": HOUR0 - 24 * HOUR_MS, "end": HOUR0}
        daily = client.get_alerts("shop", "churn", rule_id="daily", bin="day", **day_before)
        assert daily == shown(DAILY_RESOLVED)
        with pytest.raises(ApiError, match="'state' must be one of") as refused:
            client.get_alerts("shop", "churn", state="firing")
        assert refused.value.status == 400

    env = settings.with_overrides(api_url=api.url, api_token=token).to_env()
    runner = CliRunner()
    printed = runner.invoke(main, ["alerts", "shop", "churn", "--state", "open"], env=env)
    assert printed.exit_code == 0, printed.output
    header, *rows = printed.output.splitlines()
    assert header.split() == ["BIN", "RULE", "COLUMN", "SEVERITY", "VALUE", "THRESHOLD",
                              "LAST", "CHANGE"]  # fmt: skip
    assert [row.split() for row in rows] == [
        ["2025-11-24", "19:00", "hour", "drift-age", "age", "critical", "0.4", "0.25",
         "escalated", "2025-11-24", "20:02"],
        ["2025-11-24", "17:00", "hour", "drift-age", "age", "critical", "0.4", "0.25",
         "fired", "2025-11-24", "18:01"],
    ]  # fmt: skip
    ruled = runner.invoke(main, ["alerts", "shop", "churn", "--rule", "nope"], env=env)
    assert (ruled.exit_code, ruled.output) == (0, "no alerts\n")
    refused_cli = runner.invoke(main, ["alerts", "shop", "churn", "--state", "firing"], env=env)
    assert refused_cli.exit_code == 1
    assert "'state' must be one of open, resolved, all" in refused_cli.output
