"""compose.yaml runs unattended and shows only the public surfaces (SPEC §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_every_service_restarts_by_itself() -> None:
    assert {name: s.get("restart") for name, s in services().items()} == dict.fromkeys(
        services(), "unless-stopped"
    )


def test_only_the_api_and_the_broker_are_published() -> None:
    published = {name for name, s in services().items() if s.get("ports")}
    assert published == {"api", "kafka"}  # Kafka: model services produce to it
    assert services()["worker"]["expose"] == ["6066"]


def test_the_api_and_the_workers_share_the_internal_secret() -> None:
    """The worker answers only requests with the secret: both get the same one, from the
    environment, else from the one file in a volume both mount (made by the first)."""
    worker, api = services()["worker"], services()["api"]
    for service in (worker, api):
        env = service["environment"]
        assert env["DRIFTLINE_INTERNAL_SECRET"] == "${DRIFTLINE_INTERNAL_SECRET:-}"
        assert f"internal-secret:{env['DRIFTLINE_HOME']}" in service["volumes"]
    assert worker["environment"]["DRIFTLINE_HOME"] == api["environment"]["DRIFTLINE_HOME"]
