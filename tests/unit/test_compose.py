"""compose.yaml runs unattended and shows only the public surfaces (SPEC §5); its Grafana
is provisioned with the datasources the generated dashboards name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from driftline.dashboards.datasources import POSTGRES_UID, PROMETHEUS_UID
from driftline.dashboards.export import dashboards, encode

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


def services() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return found


def test_every_service_restarts_by_itself() -> None:
    """All but the one-shot that writes the dashboards and is done."""
    restarts = {name: s.get("restart") for name, s in services().items()}
    assert restarts.pop("dashboards") == "no"
    assert restarts == dict.fromkeys(restarts, "unless-stopped")


def test_only_the_api_the_broker_and_grafana_are_published() -> None:
    published = {name for name, s in services().items() if s.get("ports")}
    assert published == {"api", "kafka", "grafana"}  # Kafka: model services produce to it
    assert services()["grafana"]["ports"] == ["3000:3000"]
    assert services()["worker"]["expose"] == ["6066"]
    assert services()["postgres"]["expose"] == ["5432"]


def test_the_api_and_the_workers_share_the_internal_secret() -> None:
    """The worker answers only requests with the secret: both get the same one, from the
    environment, else from the one file in a volume both mount (made by the first)."""
    worker, api = services()["worker"], services()["api"]
    for service in (worker, api):
        env = service["environment"]
        assert env["DRIFTLINE_INTERNAL_SECRET"] == "${DRIFTLINE_INTERNAL_SECRET:-}"
        assert f"internal-secret:{env['DRIFTLINE_HOME']}" in service["volumes"]
    assert worker["environment"]["DRIFTLINE_HOME"] == api["environment"]["DRIFTLINE_HOME"]


def provisioning(kind: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(
        (ROOT / "compose/grafana/provisioning" / kind / "driftline.yaml").read_text()
    )
    return found


def mounted(service: str, target: str) -> str:
    """The source of the service's volume mounted at ``target``."""
    for volume in services()[service]["volumes"]:
        source, mount_point, *_ = volume.split(":")
        if mount_point == target:
            return str(source)
    raise AssertionError(f"{service} mounts nothing at {target}")


def test_grafana_is_provisioned_with_the_datasources_the_dashboards_name() -> None:
    assert mounted("grafana", "/etc/grafana/provisioning") == "./compose/grafana/provisioning"
    datasources = {d["uid"]: d for d in provisioning("datasources")["datasources"]}
    boards = {name: json.loads(encode(board)) for name, board in dashboards("driftline").items()}
    named = {
        (q["datasource"]["type"], q["datasource"]["uid"])
        for board in boards.values()
        for panel in board["panels"]
        if panel["type"] != "row"
        for q in panel["targets"]
    }
    assert named == {(d["type"], uid) for uid, d in datasources.items()}
    assert datasources[POSTGRES_UID]["url"] == "postgres:5432"
    assert datasources[PROMETHEUS_UID]["url"] == "http://prometheus:9090"


def test_the_postgres_datasource_reads_the_database_the_worker_writes() -> None:
    postgres = services()["postgres"]["environment"]
    datasource = next(
        d for d in provisioning("datasources")["datasources"] if d["uid"] == POSTGRES_UID
    )
    assert datasource["user"] == postgres["POSTGRES_USER"]
    assert datasource["jsonData"]["database"] == postgres["POSTGRES_DB"]
    password = "${DRIFTLINE_POSTGRES_PASSWORD}"
    assert datasource["secureJsonData"]["password"] == password
    grafana = services()["grafana"]["environment"]
    assert grafana["DRIFTLINE_POSTGRES_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    url = services()["worker"]["environment"]["DRIFTLINE_POSTGRES_URL"]
    user_and_password = f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
    assert url == f"postgresql://{user_and_password}@postgres:5432/{postgres['POSTGRES_DB']}"


def test_grafana_provisions_the_dashboards_the_one_shot_exports() -> None:
    exporter = services()["dashboards"]
    assert exporter["command"] == ["driftline", "dashboards", "export", "/dashboards"]
    volume = mounted("dashboards", "/dashboards")
    [provider] = provisioning("dashboards")["providers"]
    assert mounted("grafana", provider["options"]["path"]) == volume
    grafana_waits = services()["grafana"]["depends_on"]["dashboards"]
    assert grafana_waits == {"condition": "service_completed_successfully"}


def test_prometheus_scrapes_the_worker_and_the_api_metrics() -> None:
    assert mounted("prometheus", "/etc/prometheus/prometheus.yml") == "./compose/prometheus.yml"
    config = yaml.safe_load((ROOT / "compose/prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    api = services()["api"]["environment"]
    assert api["DRIFTLINE_API_METRICS_HOST"] == "0.0.0.0"  # reachable in the compose network
    assert targets == {"worker:6066", f"api:{api['DRIFTLINE_API_METRICS_PORT']}"}
    assert f"{api['DRIFTLINE_API_METRICS_PORT']}" in services()["api"]["expose"]
