"""Model registration over REST: ``POST /v1/models`` and ``GET /v1/models/{project}/{model}``.

So that a service in any language can register (SPEC §1), the API takes what the Python
client takes: a spec and an optional baseline, either as one JSON document (baseline rows
as objects) or as ``multipart/form-data`` with a ``spec`` part (JSON text) and a
``baseline`` part (a .csv or .parquet file, told apart by its file name or content type).
``from_data`` (a JSON field or a form part, ``true``) infers the column types from the
baseline as ``Driftline.register_model_from_data`` does.

Registration goes through the same code as the client (``topics.model_registry.register_model``
and ``state.baseline.check_baseline``): identical again is 200, different is 409, and a
baseline that contradicts its column types is refused or warned about alike.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from driftline.api.app import SERVICES, Services, _check_scope, json_response
from driftline.api.requests import RequestError, bad_request, refuse_unknown
from driftline.state import exact_json
from driftline.state.baseline import check_baseline, spec_from_data
from driftline.state.names import model_key
from driftline.state.registered import RegisteredModel
from driftline.state.spec import InvalidSpecError, ModelSpec
from driftline.state.tabular import InvalidEventError, iter_rows
from driftline.topics.model_registry import ModelConflictError, register_model
from driftline.topics.producer import DeliveryError

_BODY_FIELDS = frozenset({"spec", "baseline", "from_data"})
_SPEC_FIELDS = frozenset(f.name for f in fields(ModelSpec) if f.init)
_ROLE_FIELDS = ("inputs", "outputs", "targets", "decisions", "metadata")
_CSV_TYPES = frozenset({"text/csv", "application/csv"})
_PARQUET_TYPES = frozenset(
    {"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"}
)
# multipart parts are read this much at a time, counted against the body limit.
_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class BaselineFile:
    """An uploaded baseline: its bytes and the suffix ``iter_rows`` reads it by."""

    content: bytes
    suffix: str


@dataclass(frozen=True, slots=True)
class Registration:
    """What a registration request asks for, before the spec and baseline are checked."""

    spec: Mapping[str, Any]
    baseline: list[Mapping[str, Any]] | BaselineFile | None
    from_data: bool


# --- handlers ----------------------------------------------------------------------------


async def post_model(request: web.Request) -> web.Response:
    """Register a model: 201 when new, 200 when the identical model is registered already."""
    services = request.app[SERVICES]
    registration = await read_registration(request, services.settings.api_max_body_bytes)
    project_id = registration.spec.get("project_id")
    if isinstance(project_id, str):
        _check_scope(request, project_id)
    # Profiling up to api_max_body_bytes of rows is CPU work: off the event loop.
    model, warnings = await asyncio.to_thread(build_model, registration)
    _check_scope(request, model.spec.project_id)
    topic = services.topics.models.name
    try:
        # Under the produce lock: two registrations of one name through this process are
        # checked and published one after the other, so the second sees the first.
        async with services.produce_lock:
            created = await asyncio.to_thread(
                register_model, services.producer, topic, services.registry, model
            )
    except ModelConflictError as error:
        raise RequestError(409, str(error)) from None
    except DeliveryError as error:
        raise RequestError(503, f"the broker did not accept the model ({error}); retry") from None
    headers = {"Location": model_path(model.spec.project_id, model.spec.model_id)}
    body = {"model": model_body(model), "warnings": list(warnings)}
    return json_response(body, 201 if created else 200, headers)


async def get_model(request: web.Request) -> web.Response:
    """The registered model: its spec and its baseline profile (null without a baseline)."""
    services: Services = request.app[SERVICES]
    project_id = request.match_info["project_id"]
    model_id = request.match_info["model_id"]
    _check_scope(request, project_id)
    model = await asyncio.to_thread(services.registry.get, model_key(project_id, model_id))
    if model is None:
        raise RequestError(
            404,
            f"model {project_id}/{model_id} is not registered; register it with POST /v1/models",
        )
    return json_response(model_body(model))


def model_path(project_id: str, model_id: str) -> str:
    """The model's URL path, each name percent-encoded (a name may hold any character)."""
    return f"/v1/models/{quote(project_id, safe='')}/{quote(model_id, safe='')}"


def model_body(model: RegisteredModel) -> dict[str, Any]:
    """A model as GET answers it; the profile is the registry record's ``baseline``."""
    return {
        "project_id": model.spec.project_id,
        "model_id": model.spec.model_id,
        "spec": model.spec.to_dict(),
        "baseline_profile": None if model.baseline is None else model.baseline.to_dict(),
    }


# --- reading the request -------------------------------------------------------------------


async def read_registration(request: web.Request, max_bytes: int) -> Registration:
    """The request as JSON or as a form upload; any other content type is a 415."""
    if request.content_type == "application/json":
        return parse_registration(await _json(await request.read(), "the body"))
    if request.content_type == "multipart/form-data":
        return await _read_form(request, max_bytes)
    raise RequestError(
        415,
        'send the registration as application/json ({"spec": ..., "baseline": [...]}) '
        "or as multipart/form-data (a 'spec' part and a 'baseline' .csv or .parquet file)",
    )


def parse_registration(body: Any) -> Registration:
    """A JSON registration: ``spec``, optional ``baseline`` rows, optional ``from_data``."""
    if not isinstance(body, Mapping):
        raise bad_request('the body must be a JSON object: {"spec": {...}, "baseline": [...]}')
    refuse_unknown(body, _BODY_FIELDS)
    baseline = body.get("baseline")
    if baseline is not None:
        baseline = baseline_rows(baseline)
    return Registration(
        spec=_spec_object(body.get("spec")),
        baseline=baseline,
        from_data=_flag(body.get("from_data", False)),
    )


def baseline_rows(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise bad_request("'baseline' must be a list of rows, each a JSON object of column values")
    for number, row in enumerate(value):
        if not isinstance(row, Mapping):
            raise bad_request(
                f"baseline row {number} is not a JSON object; each row maps column names to values"
            )
    return value


def baseline_suffix(filename: str | None, content_type: str | None) -> str:
    """``.csv`` or ``.parquet``: from the file name's extension, else the content type."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in {".csv", ".parquet"}:
        return suffix
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _CSV_TYPES:
        return ".csv"
    if kind in _PARQUET_TYPES:
        return ".parquet"
    raise RequestError(
        415,
        "the baseline part must be a .csv or .parquet file: name it so, or send it with "
        "Content-Type text/csv or application/vnd.apache.parquet",
    )


async def _read_form(request: web.Request, max_bytes: int) -> Registration:
    """The form's registration; a body that is not a well-formed form is a 400."""
    try:
        return await _read_parts(request, max_bytes)
    except (HttpProcessingError, ValueError):
        # aiohttp's reasons quote raw header bytes; the sentence says what to send instead.
        raise bad_request(
            "the body is not a well-formed multipart/form-data form (a boundary or a part's "
            "headers are malformed); send a 'spec' part and, optionally, a 'baseline' file"
        ) from None


async def _read_parts(request: web.Request, max_bytes: int) -> Registration:
    """The ``spec``, ``baseline`` and ``from_data`` parts, at most ``max_bytes`` in all."""
    reader = await request.multipart()
    budget = _Budget(max_bytes)
    spec: Any = None
    baseline: BaselineFile | None = None
    from_data = False
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise bad_request("nested multipart bodies are not supported; send flat parts")
        if part.name == "spec":
            spec = await _json(await budget.read(part), "the 'spec' part")
        elif part.name == "baseline":
            suffix = baseline_suffix(part.filename, part.headers.get("Content-Type"))
            baseline = BaselineFile(await budget.read(part), suffix)
        elif part.name == "from_data":
            from_data = _form_flag((await budget.read(part)).decode(errors="replace"))
        else:
            raise bad_request(
                f"unknown form part '{part.name or '(unnamed)'}'; the parts are 'spec', "
                "'baseline' and 'from_data'"
            )
    if spec is None:
        raise bad_request("the form has no 'spec' part; send the model spec as JSON text")
    return Registration(spec=_spec_object(spec), baseline=baseline, from_data=from_data)


class _Budget:
    """Bytes a form may still carry: multipart parts are not bounded by aiohttp."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.left = max_bytes

    async def read(self, part: BodyPartReader) -> bytes:
        chunks: list[bytes] = []
        while chunk := await part.read_chunk(_CHUNK_BYTES):
            self.left -= len(chunk)
            if self.left < 0:
                raise RequestError(
                    413,
                    f"the body is larger than {self.max_bytes:,} bytes; send a smaller "
                    "baseline (a sample profiles as well)",
                )
            chunks.append(chunk)
        return b"".join(chunks)


async def _json(raw: bytes, what: str) -> Any:
    try:
        return exact_json.loads(raw)
    except exact_json.JSONError as error:
        raise bad_request(f"{what} is not valid JSON: {error}") from None


def _spec_object(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise bad_request(
            "'spec' is required: a JSON object with project_id, model_id, inputs, outputs, ..."
        )
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad_request("'from_data' must be true or false")
    return value


def _form_flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in {"true", "false"}:
        raise bad_request("the 'from_data' part must be true or false")
    return value == "true"


# --- building the model --------------------------------------------------------------------


def build_model(registration: Registration) -> tuple[RegisteredModel, tuple[str, ...]]:
    """The model to register and its baseline's warnings; RequestError(400) says what is wrong."""
    with tempfile.TemporaryDirectory(prefix="driftline-baseline-") as folder:
        try:
            rows = _rows(registration.baseline, Path(folder))
            spec = _spec(registration, rows)
            if rows is None:
                bare = RegisteredModel(spec)
                _check_serializable(bare)
                return bare, ()
            checked = check_baseline(spec, rows)
        except InvalidSpecError as error:
            raise bad_request(f"{error}") from None
        except InvalidEventError as error:
            raise bad_request(f"the baseline cannot be read: {error}") from None
    model = RegisteredModel(spec, checked.profile)
    _check_serializable(model)
    return model, checked.warnings


def _check_serializable(model: RegisteredModel) -> None:
    """The registry record is plain JSON: a value only exact JSON can hold is refused."""
    try:
        model.canonical()
    except orjson.JSONEncodeError:
        raise bad_request(
            "positive_class and classes must be strings, booleans or numbers within 64 bits"
        ) from None


def _rows(
    baseline: list[Mapping[str, Any]] | BaselineFile | None, folder: Path
) -> list[Mapping[str, Any]] | None:
    """The baseline's rows; an uploaded file is read by ``iter_rows`` as the client would."""
    if not isinstance(baseline, BaselineFile):
        return baseline
    path = folder / f"baseline{baseline.suffix}"
    path.write_bytes(baseline.content)
    return list(iter_rows(path))


def _spec(registration: Registration, rows: list[Mapping[str, Any]] | None) -> ModelSpec:
    raw = registration.spec
    if not registration.from_data:
        return ModelSpec.from_dict(raw)
    if rows is None:
        raise InvalidSpecError("from_data infers the column types from the baseline: send one")
    return _spec_from_data(raw, rows)


def _spec_from_data(raw: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> ModelSpec:
    """``spec_from_data`` on a JSON spec, whose fields are checked before they are used."""
    unknown = sorted(set(raw) - _SPEC_FIELDS)
    if unknown:
        raise InvalidSpecError(f"unknown spec fields: {', '.join(unknown)}")
    if "outputs" not in raw:
        raise InvalidSpecError("outputs is required: the model's output columns")
    for name in ("project_id", "model_id", "event_id_col", "event_ts_col"):
        if name in raw and not isinstance(raw[name], str):
            raise InvalidSpecError(f"{name} must be a string")
    if not isinstance(raw.get("column_types") or {}, Mapping):
        raise InvalidSpecError("column_types must map column names to types")
    fields = dict(raw)
    project_id, model_id = fields.pop("project_id", ""), fields.pop("model_id", "")
    roles = {role: fields.pop(role) for role in _ROLE_FIELDS if role in fields}
    return spec_from_data(project_id, model_id, rows, **roles, **fields)
