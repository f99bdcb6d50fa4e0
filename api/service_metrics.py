"""The API's service metrics: every request counted and timed by its route's template, and
the ``/metrics`` listener apart from the public port (SPEC §5: only the REST API is
public; Prometheus scrapes ``DRIFTLINE_API_METRICS_HOST:DRIFTLINE_API_METRICS_PORT``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from driftline.topics.service_metrics import (
    EXPOSITION_CONTENT_TYPE,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    exposition,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The route label of a request no route matched (404, 405): its path could be anything,
# and each label value is a series kept.
UNMATCHED = "unmatched"


def route_label(request: web.Request) -> str:
    """The template of the route the request matched (``/v1/models/{project_id}/{model_id}``),
    never its path; ``UNMATCHED`` when none did."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts and times every request by route, method and the status it was answered with
    (outermost: the status is the one the other middlewares settled on)."""
    started = time.perf_counter()
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as error:
        code = error.status
        raise
    finally:
        route, method = route_label(request), request.method
        HTTP_REQUESTS.labels(route, method, str(code)).inc()
        HTTP_REQUEST_DURATION.labels(route, method).observe(time.perf_counter() - started)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=exposition(), headers={"Content-Type": EXPOSITION_CONTENT_TYPE})


def metrics_app() -> web.Application:
    """The application of the metrics listener: ``GET /metrics`` only."""
    app = web.Application()
    app.router.add_get("/metrics", metrics, allow_head=False)
    return app
