"""The status dashboard at ``/``: static files (no build step), talking to the same
JSON API with the user's token. The charting library (uPlot) is vendored."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_from_directory

STATIC = Path(__file__).resolve().parents[1] / "dashboard"

bp = APIBlueprint("dashboard", __name__, enable_openapi=False, static_folder=str(STATIC),
                  static_url_path="/dashboard")

# Everything the page needs comes from this server: no inline script, no third party.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@bp.get("/")
def index() -> Any:
    response: Response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.after_request
def _static_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
