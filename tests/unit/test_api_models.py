"""The pure parts of REST registration (api/models.py): reading a registration request,
telling a CSV from a Parquet upload, and building the model the client would build."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from driftline.api.models import (
    BaselineFile,
    Registration,
    baseline_suffix,
    build_model,
    model_body,
    model_path,
    parse_registration,
)
from driftline.api.requests import RequestError
from driftline.state.baseline import check_baseline
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec

SPEC: dict[str, Any] = {
    "project_id": "shop",
    "model_id": "churn",
    "inputs": ["age", "plan"],
    "outputs": ["score"],
    "column_types": {"age": "int", "plan": "category", "score": "float"},
}
ROWS = [{"age": 20 + i % 7, "plan": ["a", "b"][i % 2], "score": i / 40} for i in range(40)]


def refused(call: Any, *args: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(
    ("filename", "content_type", "suffix"),
    [
        ("b.csv", None, ".csv"),
        ("B.CSV", "application/octet-stream", ".csv"),
        ("b.parquet", None, ".parquet"),
        ("blob", "text/csv; charset=utf-8", ".csv"),
        (None, "application/vnd.apache.parquet", ".parquet"),
        ("b.txt", "application/x-parquet", ".parquet"),
    ],
)
def test_the_baseline_format_comes_from_the_name_else_the_content_type(
    filename: str | None, content_type: str | None, suffix: str
) -> None:
    assert baseline_suffix(filename, content_type) == suffix


def test_a_baseline_neither_csv_nor_parquet_is_415() -> None:
    error = refused(baseline_suffix, "b.xlsx", "application/zip")
    assert error.status == 415
    assert "text/csv or application/vnd.apache.parquet" in error.message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "the body must be a JSON object"),
        ({"spec": SPEC, "colour": 1}, "unknown field(s) 'colour'"),
        ({"baseline": ROWS}, "'spec' is required"),
        ({"spec": [SPEC]}, "'spec' is required"),
        ({"spec": SPEC, "baseline": "rows.csv"}, "'baseline' must be a list of rows"),
        ({"spec": SPEC, "baseline": [{}, None]}, "baseline row 1 is not a JSON object"),
        ({"spec": SPEC, "from_data": 1}, "'from_data' must be true or false"),
    ],
)
def test_malformed_registrations_are_400_saying_what_to_change(body: Any, problem: str) -> None:
    error = refused(parse_registration, body)
    assert error.status == 400
    assert problem in error.message
    assert "None" not in error.message


def test_a_json_registration_builds_the_model_the_client_builds() -> None:
    model, warnings = build_model(parse_registration({"spec": SPEC, "baseline": ROWS}))
    spec = ModelSpec.from_dict(SPEC)
    assert model == RegisteredModel(spec, check_baseline(spec, ROWS).profile)
    assert warnings == ()
    assert build_model(parse_registration({"spec": SPEC})) == (RegisteredModel(spec), ())


def test_an_uploaded_csv_and_parquet_build_the_same_model_as_rows() -> None:
    frame = pd.DataFrame(ROWS)
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False)
    from_rows, _ = build_model(Registration(SPEC, ROWS, False))
    csv_file = BaselineFile(frame.to_csv(index=False).encode(), ".csv")
    assert build_model(Registration(SPEC, csv_file, False))[0] == from_rows
    parquet_file = BaselineFile(parquet.getvalue(), ".parquet")
    assert build_model(Registration(SPEC, parquet_file, False))[0] == from_rows


def test_from_data_infers_types_and_inputs_as_spec_from_data() -> None:
    raw = {"project_id": "shop", "model_id": "churn", "outputs": ["score"]}
    model, _ = build_model(Registration(raw, ROWS, True))
    assert model.spec.inputs == ("age", "plan")
    assert {k: v.value for k, v in model.spec.column_types.items()} == {
        "age": "int", "plan": "category", "score": "float"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("registration", "problem"),
    [
        (Registration(SPEC, None, True), "from_data infers the column types"),
        (
            Registration({**SPEC, "model_id": None}, None, False),
            "'model_id' must be a non-empty string without '/'; it is missing",
        ),
        (Registration({**SPEC, "task": 3}, None, False), "task must be one of"),
        (
            Registration({**SPEC, "inputs": ["a", "a"]}, None, False),
            "inputs lists a column twice: a",
        ),
        (Registration({"project_id": "p", "model_id": "m"}, ROWS, True), "outputs is required"),
        (Registration({**SPEC, "rows": 1}, ROWS, True), "unknown spec fields: rows"),
        (Registration({**SPEC, "event_id_col": ["id"]}, ROWS, True), "event_id_col must be"),
        (Registration({**SPEC, "column_types": ["int"]}, ROWS, True), "column_types must map"),
        (Registration({**SPEC, "outputs": 3}, ROWS, True), "outputs must be a list"),
        (Registration({**SPEC, "classes": 3}, ROWS, False), "classes must be a list"),
        (Registration({**SPEC, "positive_class": 2**70}, None, False), "within 64 bits"),
        (Registration(SPEC, [{"age": 1}], False), "missing from every baseline row"),
        (Registration(SPEC, BaselineFile(b"PAR1 no", ".parquet"), False), "cannot be read"),
        (Registration(SPEC, [dict(r, plan=True) for r in ROWS], False), "column 'plan'"),
    ],
)
def test_what_cannot_be_registered_is_a_400(registration: Registration, problem: str) -> None:
    error = refused(build_model, registration)
    assert error.status == 400
    assert problem in error.message
    assert "None" not in error.message
    assert "[" not in error.message


def test_the_model_path_percent_encodes_each_name() -> None:
    assert model_path("shop", "churn") == "/v1/models/shop/churn"
    assert model_path("a b", "c\r?d") == "/v1/models/a%20b/c%0D%3Fd"


def test_the_model_body_names_the_model_and_carries_spec_and_profile() -> None:
    model, _ = build_model(Registration(SPEC, ROWS, False))
    body = model_body(model)
    assert (body["project_id"], body["model_id"]) == ("shop", "churn")
    assert body["spec"] == ModelSpec.from_dict(SPEC).to_dict()
    assert body["baseline_profile"] == model.baseline.to_dict()  # type: ignore[union-attr]
    assert model_body(RegisteredModel(model.spec))["baseline_profile"] is None


# --- the models topic record as topics/SCHEMAS.md documents it -------------------------------


def documented_models_record() -> tuple[str, dict[str, Any]]:
    """The models-topic section of SCHEMAS.md and its JSON example."""
    text = (Path(__file__).parents[2] / "topics" / "SCHEMAS.md").read_text()
    section = text.split("## `<prefix>.models`")[1].split("\n## ")[0]
    example = section.split("```json\n")[1].split("```")[0]
    return section, orjson.loads(example)


def test_the_documented_models_record_is_one_the_registry_reads_and_lists_every_field() -> None:
    section, example = documented_models_record()
    model = RegisteredModel.from_dict(example)
    assert model.to_dict() == example  # every field present, as written
    column = model.baseline.columns["amount"]  # type: ignore[union-attr]
    assert column.bin_of(40) == 5
    assert column.out_of_range(81)
    fields = [*example, *example["baseline"], *example["baseline"]["columns"][0]]
    missing = [name for name in fields if f"`{name}`" not in section]
    assert missing == []
