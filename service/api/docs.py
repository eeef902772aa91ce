"""GET /api/v1/docs: the API's interactive documentation (Swagger UI), served from this
server like the dashboard, under the same CSP: Swagger UI is vendored (see
service/dashboard/vendor/README.md) and started from a file, not an inline script. It
is APIFlask's docs page otherwise, which loads an unpinned Swagger UI from a public CDN
with an inline script, on the origin whose pages hold the user's token."""
from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_from_directory

from .dashboard import CSP, STATIC

bp = APIBlueprint("docs", __name__, enable_openapi=False)


@bp.get("/docs")
def docs() -> Any:
    response: Response = send_from_directory(STATIC, "docs.html", max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    return response
