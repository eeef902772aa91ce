"""The docker-compose cluster, checked without a Docker engine: every service's
command exists in the package, every variable it needs is set, the wiring is whole."""
from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from trainyard.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NEEDS = {"TRAINYARD_DATABASE_URL", "TRAINYARD_BROKER_URL", "TRAINYARD_ARTIFACT_DIR"}


def trainyard_services():
    return {name: svc for name, svc in SERVICES.items() if svc.get("command", [""])[0] == "trainyard"}


def test_the_cluster_has_its_parts():
    assert {"postgres", "redis", "migrate", "api", "worker", "flower"} <= set(SERVICES)
    assert SERVICES["postgres"]["healthcheck"] and SERVICES["redis"]["healthcheck"]
    assert "replicas" not in SERVICES["worker"].get("deploy", {}), "workers scale with --scale worker=N"
    assert "container_name" not in SERVICES["worker"], "a fixed name would stop --scale"


def test_every_trainyard_command_exists_with_its_options():
    for name, svc in trainyard_services().items():
        args = svc["command"][1:]
        command = cli.get_command(click.Context(cli), args[0])
        assert command is not None, f"{name}: trainyard has no command {args[0]!r}"
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for arg in args[1:]:
            if arg.startswith("--"):
                assert arg.split("=")[0] in known, f"{name}: `trainyard {args[0]}` has no option {arg}"
        assert svc.get("build") == ".", f"{name} runs the project's image"


def test_every_trainyard_service_gets_its_configuration_from_the_environment():
    for name, svc in trainyard_services().items():
        env = svc.get("environment") or {}
        assert NEEDS <= set(env), f"{name} lacks {NEEDS - set(env)}"
        db = env["TRAINYARD_DATABASE_URL"]
        assert db.startswith("postgresql+psycopg://") and "@postgres:" in db
        assert env["TRAINYARD_BROKER_URL"].startswith("redis://redis:")
    creds = SERVICES["postgres"]["environment"]
    url = SERVICES["api"]["environment"]["TRAINYARD_DATABASE_URL"]
    user, password, db = re.match(r".*://([^:]+):([^@]+)@[^/]+/(\w+)", url).groups()
    assert (user, password, db) == (creds["POSTGRES_USER"], creds["POSTGRES_PASSWORD"], creds["POSTGRES_DB"])


def test_artifacts_are_shared_and_dependencies_resolve():
    for name in ("api", "worker"):
        assert any(v.endswith(":/artifacts") for v in SERVICES[name]["volumes"]), name
        assert SERVICES[name]["environment"]["TRAINYARD_ARTIFACT_DIR"] == "/artifacts"
        assert SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, svc in SERVICES.items():
        for dep in svc.get("depends_on", {}):
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source in COMPOSE["volumes"], f"{name} mounts undeclared volume {source}"


def test_the_image_contains_what_the_commands_need():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for part in ("nncore", "service", "worker", "migrations"):
        assert f"COPY {part} {part}" in dockerfile
    # editable: migrations next to the packages; flower for its service; onnx for model.onnx downloads
    assert '-e ".[cluster,onnx]"' in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "flower" in pyproject.split("cluster =", 1)[1].split("\n", 1)[0]
