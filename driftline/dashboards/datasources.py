"""The two datasources the dashboards name, by fixed uids.

A dashboard refers to its datasource by uid, so Grafana's provisioning
(``compose/grafana/provisioning/datasources``) and a hand-made datasource in an existing
Grafana (README, "Grafana") must use these uids.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DataSourceRef

from driftline.dashboards.postgres_query import POSTGRES_PLUGIN

POSTGRES_UID = "driftline-postgres"
PROMETHEUS_UID = "driftline-prometheus"

POSTGRES = DataSourceRef(type_val=POSTGRES_PLUGIN, uid=POSTGRES_UID)
PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
