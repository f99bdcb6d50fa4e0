"""The model registry: a compacted topic of specs keyed ``project_id/model_id``.

Every worker and client reads the whole topic (``topics.views.TopicView``: no consumer
group, all partitions from the start), so each process knows every model. A lookup that
misses reads on up to the topic's current end before answering "unknown": a model
registered a moment ago is therefore found, and no valid event is dead-lettered for
racing its registration.

That read waits on the broker (~11 ms); paid for every message of an unregistered model,
5% such traffic cut the merge agent from 12.8k to 1.7k messages/s. So a miss is
remembered for ``MISS_REFRESH_S``, unless the registry topic has grown meanwhile (which
the consumer's cached watermarks tell without asking the broker).
"""

from __future__ import annotations

import time

import orjson

from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.tables import TEXT, Codec
from driftline.topics.producer import CheckedProducer
from driftline.topics.views import TopicView, decoded_records

# How long "not registered" is believed without reading the registry topic again.
MISS_REFRESH_S = 1.0
# Misses remembered at most (a stream of random model names must not grow memory).
_MISSES_KEPT = 10_000


class ModelConflictError(ValueError):
    """Registering a model again with a different spec or baseline."""


def _encoded_model(model: RegisteredModel) -> bytes:
    return orjson.dumps(model.to_dict())


def _decoded_model(raw: bytes) -> RegisteredModel:
    """A registry record; ``ValueError`` for one that is not a registered model."""
    return RegisteredModel.from_dict(orjson.loads(raw))


# The registry topic's value: a model's spec and baseline profile (SCHEMAS.md).
MODEL_RECORD: Codec[RegisteredModel] = Codec(_encoded_model, _decoded_model)


def publish_model(producer: CheckedProducer, topic: str, model: RegisteredModel) -> None:
    producer.produce(topic, TEXT.encode(model.key), MODEL_RECORD.encode(model))
    producer.flush()


def register_model(
    producer: CheckedProducer, topic: str, registry: ModelRegistry, model: RegisteredModel
) -> bool:
    """Publish ``model`` to the registry unless it is registered already; True if published.

    A model is registered once: its bins were computed with that spec and baseline, so
    registering the identical model again is a no-op (a retried registration succeeds)
    and a different one under the same name raises ``ModelConflictError``. The client,
    the CLI and the REST API all register through here.
    """
    registry.catch_up()
    current = registry.get(model.key)
    if current is not None:
        if current.canonical() != model.canonical():
            raise ModelConflictError(
                f"model {model.key} is already registered with another spec or baseline; a "
                "model is registered once (its metric bins were computed with that spec and "
                "baseline): register the new version under a new model_id"
            )
        return False
    publish_model(producer, topic, model)
    registry.catch_up()  # its own next lookup must find the model, not an earlier miss
    return True


class ModelRegistry:
    """An in-memory view of the registry topic, caught up on demand."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._models: dict[str, RegisteredModel] = {}
        self._misses: dict[str, float] = {}
        self.catch_ups = 0
        self._view = TopicView(
            bootstrap_servers, topic, decoded_records(MODEL_RECORD, self._put), "model registry"
        )
        self.catch_up()

    def get(self, model_key: str) -> RegisteredModel | None:
        model = self._models.get(model_key)
        if model is not None:
            return model
        missed = self._misses.get(model_key)
        if (
            missed is not None
            and time.monotonic() - missed < MISS_REFRESH_S
            and not self._view.grown()
        ):
            return None
        self.catch_up()
        model = self._models.get(model_key)
        if model is None:
            if len(self._misses) >= _MISSES_KEPT:
                self._misses.clear()
            self._misses[model_key] = time.monotonic()
        return model

    def spec(self, model_key: str) -> ModelSpec | None:
        model = self.get(model_key)
        return None if model is None else model.spec

    def catch_up(self, timeout_s: float = 10.0) -> None:
        self.catch_ups += 1
        self._view.catch_up(timeout_s)

    def close(self) -> None:
        self._view.close()

    def _put(self, name: str, model: RegisteredModel | None) -> None:
        if model is None:
            self._models.pop(name, None)
        else:
            self._models[name] = model
