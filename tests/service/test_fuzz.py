"""Property-based fuzzing of the running API from its own OpenAPI document (schemathesis).

One ``trainyard api`` (gunicorn, on SQLite and then on PostgreSQL) serves; schemathesis's ``st run`` loads
/api/v1/openapi.json from it and runs its phases (examples, coverage, fuzzing, stateful
sequences along the inferred links) with every check it has: no 5xx, every status code,
content type, header and body as documented, schema-violating requests rejected,
schema-valid ones accepted, auth not ignored, 405 with Allow for undeclared methods.
Bounded: at most MAX_EXAMPLES cases per operation and MAX_TIME seconds in all.

Adjusted only where a rule is beyond what JSON Schema can state (CONFIG: which bodies
POST /jobs and POST /datasets accept; HOOKS: which page tokens the server issued);
every check stays on for every operation.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ApiServer, start_api_server, stop_api_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("TRAINYARD_FUZZ_EXAMPLES", "30"))
MAX_TIME = int(os.environ.get("TRAINYARD_FUZZ_SECONDS", "45"))
SEED = os.environ.get("TRAINYARD_FUZZ_SEED", "20261126")

CONFIG = """
# a request line over 8190 bytes is a 414 and a head over the server's bounds a 431,
# whatever the schema allows (trainyard/httpworker.py; both documented on every
# operation): a schema-violating case that long is rejected by them
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "414", "415", "422", "428", "429", "431", "5xx"]

# positive_data_acceptance stays on, but two operations may refuse a schema-valid body
# with 422, for rules beyond JSON Schema:
# - POST /jobs: the document outlines a spec (its objects and their fields); what makes
#   one trainable is more - names in registries with per-name parameters, cross-field
#   rules (parameters of input_dim x units, world_size <= batch_size, early stopping on
#   val_* needs a validation split), datasets that must exist. The spec validator answers
#   those with every problem and its path (tests/service/test_jobs_api.py checks them).
# - POST /datasets: the file is "binary"; being a CSV or NPZ of numbers is its content.
[[operations]]
include-name = "POST /api/v1/jobs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "POST /api/v1/datasets"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# /tokens: a new token's expires_at must lie in the next 10 years (relative to now, which
# JSON Schema cannot say) and not beside expires_in_days; ?user= and ?all=true exclude
# each other (OpenAPI parameters cannot say that). Each is a 422 naming the field
# (tests/service/test_tokens.py checks them).
[[operations]]
include-name = "POST /api/v1/tokens"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "GET /api/v1/tokens"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""

HOOKS = '''
"""Schema-valid cases carry cursors this server issued. A page token is opaque: which
strings are tokens is more than a schema can say, so a made-up one is rightly refused
with 422 (test_jobs_api.py checks that). Jobs and datasets share one token encoder, so a
made-up token becomes a real one; elsewhere it is dropped (the first page). Values that
break the schema (negative cases) are left alone, and must still be refused."""
import os
import zlib

import schemathesis

from service.store.jobs import encode_page_token

ISSUED = {"/api/v1/jobs", "/api/v1/datasets"}


@schemathesis.hook
def before_call(ctx, case, kwargs):  # every phase, coverage included (map_query is not applied there)
    if case.method.upper() != "GET" or not isinstance(case.query, dict) or "page_token" not in case.query:
        return
    token, param = case.query["page_token"], case.operation.query.get("page_token")
    if not isinstance(token, str) or param is None or not param.is_valid(token):
        return
    if case.path in ISSUED:
        case.query["page_token"] = encode_page_token(zlib.crc32(token.encode()) % 1000)
    else:
        del case.query["page_token"]


@schemathesis.hook("before_call")
def keep_the_fuzzing_token(ctx, case, kwargs):
    """DELETE /tokens/{id} may revoke the token making the request, as documented: every
    call after it would be a 401 and test nothing. Its id becomes one nobody has (404)."""
    if case.method.upper() == "DELETE" and case.path == "/api/v1/tokens/{token_id}" \
            and isinstance(case.path_parameters, dict) \
            and str(case.path_parameters.get("token_id")) == os.environ["TRAINYARD_FUZZ_TOKEN_ID"]:
        case.path_parameters["token_id"] = 2**62
'''


def _st() -> list[str]:
    exe = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    return [exe] if exe else [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_server(request, tmp_path_factory) -> ApiServer:
    # both: PostgreSQL refuses what SQLite stores (NUL in text), so a 500 may hide on one
    pg = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    server = start_api_server(request.param, tmp_path_factory.mktemp("fuzz"), pg)
    yield server
    stop_api_server(server)


def test_the_api_keeps_the_promises_of_its_openapi_document(fuzz_server, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    (tmp_path / "trainyard_fuzz_hooks.py").write_text(HOOKS)
    own = fuzz_server.session("alice").get(fuzz_server.api + "/tokens").json()["items"][0]["id"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "SCHEMATHESIS_HOOKS": "trainyard_fuzz_hooks", "NO_COLOR": "1", "TRAINYARD_FUZZ_TOKEN_ID": str(own)}
    # one worker: with two threads, hypothesis's lambda-source parsing trips CPython 3.11's
    # "AST constructor recursion depth mismatch" inside schemathesis (a tool error, not the API's)
    cmd = _st() + ["--config-file", str(tmp_path / "schemathesis.toml"), "run", fuzz_server.api + "/openapi.json",
                   "-H", f"Authorization: Bearer {fuzz_server.tokens['alice']}",
                   "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME),
                   "--seed", SEED, "--workers", "1", "--request-timeout", "10", "--no-color",
                   "--generation-database", "none"]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME + 120)
    report = out.stdout + out.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    failures = report[report.find("FAILURES"):report.find("WARNINGS")] if "FAILURES" in report else report
    assert out.returncode == 0, f"schemathesis found problems (seed {SEED}):\n{failures[:12000]}\n{report[-1500:]}"
    assert "Tested:" in report and "Server error" not in report
    server_log = (fuzz_server.artifact_dir.parent / "api.log").read_text(errors="replace")
    assert "Traceback" not in server_log, server_log[server_log.index("Traceback"):][:4000]
