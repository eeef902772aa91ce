"""The status dashboard at ``/``: static files (no build step), talking to the same
JSON API with the user's token. The charting library (uPlot) is vendored, as is Swagger
UI for the API's documentation page (service/api/docs.py), which shares its CSP."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from apiflask import APIBlueprint
from flask import Response, send_from_directory

STATIC = Path(__file__).resolve().parents[1] / "dashboard"

bp = APIBlueprint("dashboard", __name__, enable_openapi=False, static_folder=str(STATIC),
                  static_url_path="/dashboard")

# Everything the page needs comes from this server: no inline script, no third party.
# The API's docs page (docs.py) runs under this one too.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@bp.get("/")
def index() -> Any:
    response: Response = send_from_directory(STATIC, "index.html", max_age=0)
    # X-Content-Type-Options and Referrer-Policy: on every response (create_app)
    response.headers["Content-Security-Policy"] = CSP
    return response
