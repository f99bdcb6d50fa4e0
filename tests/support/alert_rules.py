"""Alert rules on the churn model (``tests.support.models.CHURN_SPEC``), as the REST API,
the client and the CLI take them."""

from __future__ import annotations

from typing import Any

WEBHOOK_SECRET = "hmac-key-never-shown"


def drift_rule(**changes: Any) -> dict[str, Any]:
    """PSI of ``age`` above 0.25 (warning above 0.1), hourly, sent to a webhook."""
    return {
        "rule_id": "drift-age",
        "project_id": "shop",
        "model_id": "churn",
        "metric": "psi",
        "columns": ["age"],
        "comparison": {"kind": "absolute"},
        "direction": "greater",
        "critical": 0.25,
        "warning": 0.1,
        "bin": "hour",
        "evaluation_delay_hours": 0,
        "channels": [
            {"type": "webhook", "url": "https://hooks.example/dl", "secret": WEBHOOK_SECRET}
        ],
        **changes,
    }
