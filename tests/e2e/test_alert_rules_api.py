"""Alert rules over REST, the client and the CLI, on the real broker and Redis: create,
list, read, replace and delete; 400s with the rule model's messages, scopes, unknown
models, conflicts; secrets never answered; a rule written through one API process is
served by another (the rules live in their compacted topic, not in a process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from driftline.api.alert_rules import MASK
from driftline.cli import main
from driftline.client import ApiError
from driftline.settings import Settings
from tests.support.alert_rules import WEBHOOK_SECRET, drift_rule
from tests.support.api import StartApi, call, client_for, register, token_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

RULES = "/v1/alert-rules"
ONE = "/v1/alert-rules/shop/churn/drift-age"
LIST = f"{RULES}?project_id=shop&model_id=churn"


def shown(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the API answers it: the webhook's secret masked."""
    channels = [{**channel, "secret": MASK} for channel in rule["channels"]]
    return {**rule, "channels": channels}


def test_create_list_get_replace_and_delete(settings: Settings, start_api: StartApi) -> None:
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")

    created = call(api, "POST", RULES, drift_rule(), token)
    assert created.status == 201, created.body
    assert created.headers["Location"] == ONE
    assert created.body == shown(drift_rule())
    assert WEBHOOK_SECRET.encode() not in created.raw
    again = call(api, "POST", RULES, drift_rule(), token)
    assert (again.status, again.body) == (200, shown(drift_rule()))

    listed = call(api, "GET", LIST, token=token)
    assert listed.status == 200
    assert listed.body == {"project_id": "shop", "model_id": "churn",
                           "rules": [shown(drift_rule())]}  # fmt: skip
    assert WEBHOOK_SECRET.encode() not in listed.raw
    assert call(api, "GET", ONE, token=token).body == shown(drift_rule())

    replacement = {k: v for k, v in drift_rule(critical=0.5).items() if k != "rule_id"}
    replaced = call(api, "PUT", ONE, replacement, token)
    assert (replaced.status, replaced.body) == (200, shown(drift_rule(critical=0.5)))
    assert call(api, "GET", ONE, token=token).body["critical"] == 0.5

    deleted = call(api, "DELETE", ONE, token=token)
    assert (deleted.status, deleted.raw) == (204, b"")
    assert call(api, "GET", ONE, token=token).status == 404
    assert call(api, "DELETE", ONE, token=token).status == 404
    assert call(api, "PUT", ONE, drift_rule(), token).status == 404
    assert call(api, "GET", LIST, token=token).body["rules"] == []


def test_refusals_say_what_to_change(settings: Settings, start_api: StartApi) -> None:
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")

    refusals: list[tuple[dict[str, Any], str]] = [
        ({"metric": "nonsense"}, 'metric "nonsense" is unknown'),
        ({"columns": ["height"]}, "height"),
        ({"warning": 0.5}, "warning"),
        ({"rule_id": "no spaces"}, "rule_id must be 1 to 64 characters"),
    ]
    for changes, words in refusals:
        answer = call(api, "POST", RULES, drift_rule(**changes), token)
        assert answer.status == 400, (changes, answer.body)
        assert words in answer.body["error"], (changes, answer.body)
    renamed = call(api, "PUT", ONE, drift_rule(rule_id="other"), token)
    assert renamed.status == 400
    assert "is not the path's" in renamed.body["error"]

    unknown = call(api, "POST", RULES, drift_rule(model_id="nope"), token)
    assert unknown.status == 404
    assert "shop/nope is not registered" in unknown.body["error"]
    listed = call(api, "GET", f"{RULES}?project_id=shop&model_id=nope", token=token)
    assert listed.status == 404

    assert call(api, "POST", RULES, drift_rule(), token).status == 201
    conflict = call(api, "POST", RULES, drift_rule(critical=0.9), token)
    assert conflict.status == 409
    assert "replace it with PUT" in conflict.body["error"]

    other = token_for(api, "elsewhere")
    for method, path, body in [("POST", RULES, drift_rule()), ("GET", ONE, None),
                               ("PUT", ONE, drift_rule()), ("DELETE", ONE, None),
                               ("GET", LIST, None)]:  # fmt: skip
        answer = call(api, method, path, body, other)
        assert answer.status == 403, (method, path, answer.body)
    assert call(api, "GET", ONE).status == 401
    typo = call(api, "GET", f"{RULES}?project_id=shop&model_id=churn&modle=x", token=token)
    assert typo.status == 400
    assert "'modle'" in typo.body["error"]


def test_a_rule_written_through_one_process_is_served_by_another(
    settings: Settings, start_api: StartApi
) -> None:
    first, second = start_api(settings), start_api(settings)
    register(settings)
    token = token_for(first, "shop")

    assert call(first, "POST", RULES, drift_rule(), token).status == 201
    assert call(second, "GET", ONE, token=token).body == shown(drift_rule())
    assert call(second, "POST", RULES, drift_rule(critical=0.9), token).status == 409
    assert call(second, "PUT", ONE, drift_rule(critical=0.7), token).status == 200
    assert call(first, "GET", ONE, token=token).body["critical"] == 0.7
    assert call(second, "DELETE", ONE, token=token).status == 204
    assert call(first, "GET", ONE, token=token).status == 404


def test_client_and_cli_round_trip(settings: Settings, start_api: StartApi, tmp_path: Path) -> None:
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")
    client = client_for(api, token)

    assert client.create_alert_rule(drift_rule()) == shown(drift_rule())
    assert client.replace_alert_rule(drift_rule(warning=None)) == shown(drift_rule(warning=None))
    assert client.get_alert_rules("shop", "churn") == [shown(drift_rule(warning=None))]
    with pytest.raises(ApiError, match="replace it with PUT") as conflict:
        client.create_alert_rule(drift_rule(critical=0.9))
    assert conflict.value.status == 409
    client.delete_alert_rule("shop", "churn", "drift-age")
    assert client.get_alert_rules("shop", "churn") == []

    env = settings.with_overrides(api_url=api.url, api_token=token).to_env()
    rule_file = tmp_path / "rule.json"
    rule_file.write_bytes(orjson.dumps(drift_rule(rule_id="cli-rule")))
    runner = CliRunner()
    created = runner.invoke(main, ["alert-rules", "create", str(rule_file)], env=env)
    assert created.exit_code == 0, created.output
    assert "shop/churn/cli-rule" in created.output
    listed = runner.invoke(main, ["alert-rules", "list", "shop/churn"], env=env)
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.output) == [shown(drift_rule(rule_id="cli-rule"))]
    bad_file = tmp_path / "bad.json"
    bad_file.write_bytes(orjson.dumps(drift_rule(metric="nonsense")))
    refused = runner.invoke(main, ["alert-rules", "create", str(bad_file)], env=env)
    assert refused.exit_code == 1
    assert 'metric "nonsense" is unknown' in refused.output
    deleted = runner.invoke(main, ["alert-rules", "delete", "shop/churn/cli-rule"], env=env)
    assert deleted.exit_code == 0, deleted.output
    assert client.get_alert_rules("shop", "churn") == []
    client.close()
