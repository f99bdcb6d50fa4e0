"""Model registration over REST (SPEC §1), on the real broker and Redis: JSON and uploaded
CSV/Parquet baselines, idempotence and conflicts, scopes, clear 4xx answers, baselines that
contradict their types, and a model registered over HTTP driving a worker's drift."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
import warnings
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import jensenshannon

from driftline.cli import main
from driftline.client import BaselineTypeError, BaselineTypeWarning, Driftline
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from driftline.state.spec import ModelSpec
from driftline.topics.waiting import wait_until
from tests.support.api import Answer, StartApi, call, token_for
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DECILES = [i / 10 for i in range(1, 10)]
# A boolean column declared category: the case (SPEC §1).
FLAGS_SPEC = {**CHURN_SPEC, "model_id": "flags", "inputs": ["age", "plan", "vip"],
              "column_types": {**CHURN_SPEC["column_types"], "vip": "category"}}  # fmt: skip


def body(spec: dict[str, Any], baseline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"spec": spec} if baseline is None else {"spec": spec, "baseline": baseline}


def upload(
    api: ApiProcess, token: str, parts: list[tuple[str, str | None, str | None, bytes]]
) -> Answer:
    """POST /v1/models as multipart/form-data: (name, filename, content type, bytes) parts."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, filename, content_type, content in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if content_type is not None:
            out.write(f"Content-Type: {content_type}\r\n".encode())
        out.write(b"\r\n" + content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    return raw_post(api, out.getvalue(), headers)


def raw_post(api: ApiProcess, data: bytes, headers: dict[str, str]) -> Answer:
    request = urllib.request.Request(
        api.url + "/v1/models", data=data, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def baseline_frame() -> pd.DataFrame:
    return pd.DataFrame(CHURN_BASELINE)


def expected_edges(values: list[float]) -> list[float]:
    """Decile edges as numpy computes them (repeated quantiles merge)."""
    return [float(e) for e in np.unique(np.quantile(np.asarray(values, float), DECILES))]


def assert_profiles_the_baseline(model: dict[str, Any]) -> None:
    """The profile of CHURN_SPEC's columns over CHURN_BASELINE, recomputed with numpy and
    counting."""
    profile = {c["name"]: c for c in model["baseline_profile"]["columns"]}
    assert model["baseline_profile"]["rows"] == len(CHURN_BASELINE)
    ages = [row["age"] for row in CHURN_BASELINE]
    assert profile["age"]["edges"] == pytest.approx(expected_edges(ages))
    assert (profile["age"]["minimum"], profile["age"]["maximum"]) == (min(ages), max(ages))
    counts = np.bincount(np.searchsorted(expected_edges(ages), ages, side="right"))
    assert profile["age"]["histogram"] == counts.tolist()
    plans = pd.Series([row["plan"] for row in CHURN_BASELINE]).value_counts()
    assert profile["plan"]["categories"] == sorted(plans.index)
    assert profile["plan"]["histogram"] == [int(plans[c]) for c in sorted(plans.index)] + [0]


# --- JSON registration, reading back, idempotence, conflicts -------------------------------


def test_a_model_registered_over_json_reads_back_and_registers_once(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    token = token_for(api, "shop")

    created = call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token)
    assert created.status == 201, created.body
    assert created.headers["Location"] == "/v1/models/shop/churn"
    assert created.body["warnings"] == []
    model = created.body["model"]
    assert (model["project_id"], model["model_id"]) == ("shop", "churn")
    assert model["spec"] == ModelSpec.from_dict(CHURN_SPEC).to_dict()
    assert_profiles_the_baseline(model)

    read = call(api, "GET", "/v1/models/shop/churn", token=token)
    assert (read.status, read.body) == (200, model)
    # Published through the models topic: the Python client (a Kafka reader) finds it.
    with Driftline(settings) as client:
        assert client.model("shop", "churn") == ModelSpec.from_dict(CHURN_SPEC)

    again = call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token)
    assert (again.status, again.body) == (200, created.body)
    assert again.headers["Location"] == "/v1/models/shop/churn"

    other_baseline = [dict(row, age=row["age"] + 1) for row in CHURN_BASELINE]
    conflict = call(api, "POST", "/v1/models", body(CHURN_SPEC, other_baseline), token=token)
    assert conflict.status == 409
    assert (
        "shop/churn is already registered with another spec or baseline" in (conflict.body["error"])
    )
    assert "new model_id" in conflict.body["error"]
    assert call(api, "POST", "/v1/models", body({**CHURN_SPEC, "threshold": 0.7}, CHURN_BASELINE),
                token=token).status == 409  # fmt: skip
    assert call(api, "GET", "/v1/models/shop/churn", token=token).body == model

    bare = call(api, "POST", "/v1/models", body({**CHURN_SPEC, "model_id": "bare"}), token=token)
    assert bare.status == 201
    assert bare.body["model"]["baseline_profile"] is None
    missing = call(api, "GET", "/v1/models/shop/nope", token=token)
    assert missing.status == 404
    assert missing.body == {
        "error": "model shop/nope is not registered; register it with POST /v1/models"
    }


def test_the_client_registering_the_same_model_again_is_a_no_op_across_paths(
    settings: Settings, start_api: StartApi
) -> None:
    """One rule for the client and the API: a model the client registered is 200 over REST."""
    api = start_api()
    token = token_for(api, "shop")
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
    same = call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token)
    assert same.status == 200, same.body
    assert call(api, "POST", "/v1/models", body(CHURN_SPEC), token=token).status == 409


def test_scopes_and_bad_requests_are_clear_4xx(settings: Settings, start_api: StartApi) -> None:
    api = start_api()
    shop, bank = token_for(api, "shop"), token_for(api, "bank")
    assert call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE)).status == 401
    forbidden = call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=bank)
    assert forbidden.status == 403
    assert "project 'shop'" in forbidden.body["error"]
    assert call(api, "GET", "/v1/models/shop/churn", token=bank).status == 403
    assert call(api, "GET", "/v1/models/shop/churn", token=shop).status == 404  # not registered

    refused = [
        (body({**CHURN_SPEC, "threshold": "high"}, CHURN_BASELINE), "threshold must be a number"),
        (body({**CHURN_SPEC, "outputs": [], "column_types": {}}), "at least one output"),
        (body({**CHURN_SPEC, "colour": "red"}), "unknown spec fields"),
        (body({**CHURN_SPEC, "column_types": {"age": "integer"}}), "type of column 'age' must be"),
        (body({**CHURN_SPEC, "inputs": ["age", "plan", "height"]}, CHURN_BASELINE), "height"),
        ({"spec": CHURN_SPEC, "baseline": {"age": 1}}, "'baseline' must be a list of rows"),
        ({"spec": CHURN_SPEC, "baseline": [{"age": 1}, 5]}, "baseline row 1 is not a JSON object"),
        ({"spec": CHURN_SPEC, "baseline": []}, "the baseline has no rows"),
        ({"spec": CHURN_SPEC, "rows": CHURN_BASELINE}, "unknown field(s) 'rows'"),
        ({"baseline": CHURN_BASELINE}, "'spec' is required"),
        ([CHURN_SPEC], "the body must be a JSON object"),
        ({"spec": CHURN_SPEC, "from_data": True}, "from_data infers the column types"),
        ({"spec": CHURN_SPEC, "from_data": "yes"}, "'from_data' must be true or false"),
        (
            {
                "spec": {"project_id": "shop", "model_id": "m", "outputs": 5},
                "baseline": CHURN_BASELINE,
                "from_data": True,
            },
            "outputs must be a list of column names",
        ),
    ]
    for request_body, problem in refused:
        answer = call(api, "POST", "/v1/models", request_body, token=shop)
        assert answer.status == 400, (problem, answer.body)
        assert problem in answer.body["error"], answer.body
    not_json = raw_post(api, b"{", {"Authorization": f"Bearer {shop}",
                                     "Content-Type": "application/json"})  # fmt: skip
    assert not_json.status == 400
    assert "the body is not valid JSON" in not_json.body["error"]
    as_text = raw_post(api, orjson.dumps(body(CHURN_SPEC)), {"Authorization": f"Bearer {shop}",
                                                        "Content-Type": "text/plain"})  # fmt: skip
    assert as_text.status == 415
    assert "application/json" in as_text.body["error"]
    # Nothing of the above was registered.
    assert call(api, "GET", "/v1/models/shop/churn", token=shop).status == 404


# --- baselines that contradict their declared types ------------------------------------------


def test_a_baseline_contradicting_its_types_is_refused_and_a_partial_one_warns(
    settings: Settings, start_api: StartApi, tmp_path: Any
) -> None:
    api = start_api()
    token = token_for(api, "shop")
    booleans = [dict(row, vip=i % 3 == 0) for i, row in enumerate(CHURN_BASELINE)]
    refused = call(api, "POST", "/v1/models", body(FLAGS_SPEC, booleans), token=token)
    assert refused.status == 400
    message = refused.body["error"]
    assert "column 'vip' is declared category" in message
    assert "every non-null baseline value is of another type: bool (500)" in message
    assert call(api, "GET", "/v1/models/shop/flags", token=token).status == 404

    mostly = [dict(row, vip="yes" if i % 3 else True) for i, row in enumerate(CHURN_BASELINE)]
    warned = call(api, "POST", "/v1/models", body(FLAGS_SPEC, mostly), token=token)
    assert warned.status == 201, warned.body
    assert warned.body["warnings"] == [
        "column 'vip' is declared category but 167 of its 500 non-null baseline values are of "
        "another type: bool (167); they count as type mismatches, not in its drift baseline"
    ]
    vip = next(c for c in warned.body["model"]["baseline_profile"]["columns"]
               if c["name"] == "vip")  # fmt: skip
    assert (vip["categories"], vip["mismatches"]) == (["yes"], 167)

    # The Python client refuses and warns alike.
    with Driftline(settings) as client:
        with pytest.raises(BaselineTypeError, match="column 'vip' is declared category"):
            client.register_model({**FLAGS_SPEC, "model_id": "flags2"}, booleans)
        with pytest.warns(BaselineTypeWarning, match="167 of its 500"):
            client.register_model({**FLAGS_SPEC, "model_id": "flags3"}, mostly)

    # The CLI prints the warning, and refuses without a traceback. (A CSV column mixing
    # text and booleans reads as text: the partial case is an int column with fractions.)
    env = {**settings.to_env()}
    spec_file = tmp_path / "spec.json"
    csv_file = tmp_path / "baseline.csv"
    int_spec = {**FLAGS_SPEC, "model_id": "flags4",
                "column_types": {**FLAGS_SPEC["column_types"], "vip": "int"}}  # fmt: skip
    spec_file.write_text(orjson.dumps(int_spec).decode())
    fractions = [
        dict(row, vip=0.5 if i % 3 == 0 else i % 4) for i, row in enumerate(CHURN_BASELINE)
    ]
    pd.DataFrame(fractions).to_csv(csv_file, index=False)
    printed = CliRunner().invoke(main, ["register", str(spec_file), "--baseline", str(csv_file)],
                                 env=env)  # fmt: skip
    assert printed.exit_code == 0, printed.output
    assert (
        "warning: column 'vip' is declared int but 167 of its 500 non-null baseline values "
        "are of another type: float (167)"
    ) in printed.output
    assert "registered shop/flags4" in printed.output
    pd.DataFrame(booleans).to_csv(csv_file, index=False)
    spec_file.write_text(orjson.dumps({**FLAGS_SPEC, "model_id": "flags5"}).decode())
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaselineTypeWarning)
        failed = CliRunner().invoke(
            main, ["register", str(spec_file), "--baseline", str(csv_file)], env=env
        )
    assert failed.exit_code == 1
    assert "column 'vip' is declared category" in failed.output
    assert "Traceback" not in failed.output


# --- uploaded baselines ------------------------------------------------------------------------


def test_csv_and_parquet_baselines_upload_as_form_parts(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    token = token_for(api, "shop")
    csv_bytes = baseline_frame().to_csv(index=False).encode()
    parquet = io.BytesIO()
    baseline_frame().to_parquet(parquet, index=False)

    by_name = upload(api, token, [("spec", None, "application/json", orjson.dumps(CHURN_SPEC)),
                                  ("baseline", "sample.CSV", None, csv_bytes)])  # fmt: skip
    assert by_name.status == 201, by_name.body
    assert by_name.headers["Location"] == "/v1/models/shop/churn"
    assert_profiles_the_baseline(by_name.body["model"])

    other = {**CHURN_SPEC, "model_id": "churn-parquet"}
    by_type = upload(api, token, [
        ("spec", None, None, orjson.dumps(other)),
        ("baseline", "blob", "application/vnd.apache.parquet", parquet.getvalue()),
    ])  # fmt: skip
    assert by_type.status == 201, by_type.body
    assert_profiles_the_baseline(by_type.body["model"])
    same = upload(api, token, [("spec", None, None, orjson.dumps(other)),
                               ("baseline", "b.parquet", None, parquet.getvalue())])  # fmt: skip
    assert same.status == 200

    inferred = upload(api, token, [
        ("spec", None, None, orjson.dumps({"project_id": "shop", "model_id": "guessed",
                                           "outputs": ["score"]})),
        ("baseline", "b.csv", "text/csv", csv_bytes),
        ("from_data", None, None, b"true"),
    ])  # fmt: skip
    assert inferred.status == 201, inferred.body
    spec = inferred.body["model"]["spec"]
    assert spec["inputs"] == ["age", "plan"]
    assert spec["column_types"] == {"age": "int", "plan": "category", "score": "float"}

    xlsx = ("baseline", "b.xlsx", "application/zip", b"PK")
    unknown_type = upload(api, token, [("spec", None, None, orjson.dumps(CHURN_SPEC)), xlsx])
    assert unknown_type.status == 415
    assert ".csv or .parquet" in unknown_type.body["error"]
    garbage_spec = orjson.dumps({**CHURN_SPEC, "model_id": "g"})
    garbage = upload(api, token, [("spec", None, None, garbage_spec),
                                  ("baseline", "b.parquet", None, b"not parquet")])  # fmt: skip
    assert garbage.status == 400
    assert "the baseline cannot be read" in garbage.body["error"]
    no_spec = upload(api, token, [("baseline", "b.csv", None, csv_bytes)])
    assert (no_spec.status, no_spec.body["error"]) == (
        400, "the form has no 'spec' part; send the model spec as JSON text",
    )  # fmt: skip
    bad_spec = upload(api, token, [("spec", None, None, b"{nope")])
    assert bad_spec.status == 400
    assert "the 'spec' part is not valid JSON" in bad_spec.body["error"]
    extra = upload(
        api, token, [("spec", None, None, orjson.dumps(CHURN_SPEC)), ("rows", None, None, b"")]
    )
    assert extra.status == 400
    assert "unknown form part 'rows'" in extra.body["error"]


def test_an_upload_over_the_body_limit_is_413(settings: Settings, start_api: StartApi) -> None:
    api = start_api(settings.with_overrides(api_max_body_bytes=10_000))
    token = token_for(api, "shop")
    csv_bytes = baseline_frame().to_csv(index=False).encode() * 3
    too_big = upload(api, token, [("spec", None, None, orjson.dumps(CHURN_SPEC)),
                                  ("baseline", "b.csv", None, csv_bytes)])  # fmt: skip
    assert too_big.status == 413
    assert "larger than 10,000 bytes" in too_big.body["error"]
    assert call(api, "GET", "/v1/models/shop/churn", token=token).status == 404


# --- a model registered over REST drives the worker's bins -------------------------------------


def test_a_model_registered_over_rest_is_what_the_worker_bins_against(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    start_worker(settings)
    api = start_api()
    token = token_for(api, "shop")
    assert (
        call(api, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token).status == 201
    )
    # Production skews to "team" and older ages, and meets an unseen plan.
    plans = ["team"] * 30 + ["free"] * 5 + ["gold"] * 5
    events = [
        {"event_id": f"p{i}", "event_timestamp": HOUR0 + i,
         "event": {"age": 40 + i, "plan": plan, "score": 0.5, "churned": None}}
        for i, plan in enumerate(plans)
    ]  # fmt: skip
    published = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                     "events": events}, token=token)  # fmt: skip
    assert published.status == 200, published.body
    query = f"/v1/metrics?project_id=shop&model_id=churn&start={HOUR0}&end={HOUR0 + HOUR_MS}"

    def counted() -> bool:
        found = call(api, "GET", query, token=token).body["bins"]
        return bool(found) and found[0]["counts"]["n"] == len(events)

    wait_until(counted, timeout_s=60, what="the bin of the 40 events")
    (hour_bin,) = call(api, "GET", query, token=token).body["bins"]
    drift = hour_bin["metrics"]["drift"]

    # plan: the baseline's categories plus __other__, +1-smoothed (SciPy's JS distance).
    base_plans = pd.Series([row["plan"] for row in CHURN_BASELINE]).value_counts()
    categories = sorted(base_plans.index)
    expected = np.array([base_plans[c] for c in categories] + [0]) + 1
    observed = np.array([plans.count(c) for c in categories] + [plans.count("gold")]) + 1
    assert drift["plan"]["js_distance"] == pytest.approx(
        jensenshannon(observed, expected, base=2), abs=1e-12
    )
    p, q = observed / observed.sum(), expected / expected.sum()
    assert drift["plan"]["psi"] == pytest.approx(float(np.sum((p - q) * np.log(p / q))), abs=1e-12)

    # age: numpy's decile edges of the baseline, open outer bins.
    edges = expected_edges([row["age"] for row in CHURN_BASELINE])
    bins = len(edges) + 1
    base_ages = np.bincount(np.searchsorted(edges, [r["age"] for r in CHURN_BASELINE],
                                            side="right"), minlength=bins)  # fmt: skip
    prod_ages = np.bincount(np.searchsorted(edges, [e["event"]["age"] for e in events],
                                            side="right"), minlength=bins)  # fmt: skip
    assert drift["age"]["js_distance"] == pytest.approx(
        jensenshannon(prod_ages + 1, base_ages + 1, base=2), abs=1e-12
    )
    integrity = hour_bin["metrics"]["integrity"]["plan"]
    assert integrity["range_violation"] == 5  # "gold" is not a baseline category


# --- the OpenAPI links: register, then read what was registered --------------------------------


def test_a_schemathesis_stateful_run_follows_the_link_from_register_to_read(
    settings: Settings, start_api: StartApi
) -> None:
    """Generated registrations, each followed through the documented link to its GET: no
    5xx, every answer as documented, and the link leads to the model (200)."""
    import schemathesis
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance]  # fmt: skip
    api = start_api()
    token = token_for(api)
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    # Registration and its read only: the model's counters and dead letters need a worker.
    machine = schema.include(
        path_regex=r"^/v1/models(/\{project_id\}/\{model_id\})?$"
    ).as_state_machine()
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    class Registrations(machine):  # type: ignore[misc,valid-type]
        def setup(self) -> None:
            self.suffix = uuid.uuid4().hex[:8]

        def before_call(self, case: Any) -> None:
            # Each run registers under names of its own: a name an earlier run registered
            # would answer 200 where the run first saw 201, and Hypothesis could not replay
            # the run (the link it follows depends on that status).
            spec = case.body.get("spec") if isinstance(case.body, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("model_id"), str):
                case.body = {
                    **case.body,
                    "spec": {**spec, "model_id": spec["model_id"] + self.suffix},
                }

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": api.url, "headers": {"Authorization": f"Bearer {token}"}}

        def after_call(self, response: Any, case: Any) -> None:
            seen[(f"{case.method} {case.operation.path}", response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, *_: Any, **__: Any) -> None:
            # Not "schema-valid data is accepted": a spec's cross-field rules (one target
            # for a classifier, a column in one role) are beyond the schema; they are 400s.
            # Failures are collected, not raised: the server keeps what was registered, so
            # Hypothesis could not replay a run to shrink it.
            try:
                case.validate_response(response, checks=checks)
            except Exception as failure:
                failures.append(f"{case.method} {case.formatted_path}: {failure}")

    Registrations.run(
        settings=hypothesis_settings(max_examples=60, stateful_step_count=4, deadline=None,
                                     database=None, suppress_health_check=list(HealthCheck))
    )  # fmt: skip
    assert seen[("POST /v1/models", 201)] > 0, seen
    assert seen[("GET /v1/models/{project_id}/{model_id}", 200)] > 0, seen
    assert not [key for key in seen if key[1] >= 500], seen
    assert failures == []


def test_a_model_registered_on_one_api_process_is_served_by_another_at_once(
    settings: Settings, start_api: StartApi
) -> None:
    """Behind a load balancer the next request lands on another process: it must know the
    model (its registry view reads the models topic on a miss), refuse a conflicting one
    and accept events for it, without waiting."""
    first, second = start_api(), start_api()
    token = token_for(first, "shop")

    created = call(first, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token)
    assert created.status == 201, created.body
    read = call(second, "GET", "/v1/models/shop/churn", token=token)
    assert (read.status, read.body) == (200, created.body["model"])
    assert (
        call(second, "POST", "/v1/models", body(CHURN_SPEC, CHURN_BASELINE), token=token).status
        == 200
    )
    other = {**CHURN_SPEC, "threshold": 0.7}
    conflict = call(second, "POST", "/v1/models", body(other, CHURN_BASELINE), token=token)
    assert conflict.status == 409, conflict.body

    row = {"event_id": "e-1", "event_timestamp": HOUR0, "event": dict(CHURN_BASELINE[0])}
    published = call(
        second, "POST", "/v1/events",
        {"project_id": "shop", "model_id": "churn", "events": [row]}, token=token,
    )  # fmt: skip
    assert (published.status, published.body["event_ids"]) == (200, ["e-1"]), published.body
