"""How the API proves itself to the workers' internal HTTP routes.

A worker's HTTP port serves any partition's events; only the API (which checks tokens
and project scopes) may read them. Every worker route but ``/health`` and ``/ready``
therefore requires this header, carrying the secret the API and the workers share (the
application resolves its value: ``driftline.internal_secret``). The API sends it and the
workers check it, so it lives here, below both.
"""

from __future__ import annotations

import hmac

HEADER = "X-Driftline-Internal-Secret"


def matches(expected: str, given: str | None) -> bool:
    """Whether a request's header carries the secret (in constant time)."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
