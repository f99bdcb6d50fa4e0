"""Grafana dashboards generated from code: the model dashboard (PostgreSQL) and the
pipeline dashboard (Prometheus), written by ``driftline dashboards export DIR``.

Built with grafana-foundation-sdk rather than grafanalib: the SDK is Grafana's own,
generated from Grafana's schemas, so its builders and models are typed (mypy checks a
panel's options as it checks our code) and follow Grafana's panel schema as Grafana
changes it; grafanalib is a community project of untyped dicts that lags the panel
schema. Every query the dashboards run lives in ``queries.py``.
"""
