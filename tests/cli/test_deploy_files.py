"""The container files (Dockerfile, compose.yaml, .dockerignore), checked structurally.

No Docker engine runs in CI, so the image is not built here. What can be checked without one is:
the stack's shape, fail-closed secrets, a non-root runtime, and that the build-time collectstatic
step really works with only the throwaway values the Dockerfile gives it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.cli.conftest import REPO

APP_SERVICES = ("web", "worker", "beat")
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|MASTER_KEY|TOKEN|API_KEY", re.IGNORECASE)


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _services() -> dict[str, Any]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return [(word.upper(), rest.strip()) for word, _, rest in (i.partition(" ") for i in joined)]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def _collectstatic_run() -> str:
    [run] = [args for op, args in _instructions() if op == "RUN" and "collectstatic" in args]
    return run


# --- compose.yaml -----------------------------------------------------------------------------------


def test_compose_has_the_production_stack():
    services = _services()
    assert set(services) == {"migrate", "web", "worker", "beat", "postgres", "redis"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert "command" not in services["web"]  # the image's CMD: gunicorn
    assert services["worker"]["command"][:4] == ["celery", "-A", "agentkey", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "agentkey", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"
    assert any(str(port).endswith(":8000") for port in services["web"]["ports"])


def test_postgres_and_redis_have_healthchecks_and_postgres_a_named_volume():
    services, compose = _services(), _compose()
    for name in ("postgres", "redis"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL")
        assert check["retries"] >= 3
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    [volume] = [v for v in services["postgres"]["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert volume.split(":")[0] in compose["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_healthy_postgres_and_redis_and_the_migration(name):
    depends = _services()[name]["depends_on"]
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}
    assert depends["migrate"] == {"condition": "service_completed_successfully"}


def test_migrate_waits_for_healthy_postgres():
    assert _services()["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", [*APP_SERVICES, "migrate"])
def test_app_services_run_production_settings_with_required_secrets(name):
    environment = _services()[name]["environment"]
    assert environment["DJANGO_SETTINGS_MODULE"] == "agentkey.settings.production"
    for required in ("SECRET_KEY", "AGENTKEY_MASTER_KEYS", "AGENTKEY_AUDIT_KEY"):
        assert re.fullmatch(rf"\$\{{{required}:\?[^}}]+\}}", environment[required]), required
    assert re.fullmatch(
        r"postgres://agentkey:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/agentkey",
        environment["DATABASE_URL"],
    )
    assert environment["REDIS_URL"].startswith("redis://redis:6379/")
    assert environment["ALLOWED_HOSTS"]


def test_compose_holds_no_literal_secret():
    for name, service in _services().items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAMES.search(key):
                assert re.fullmatch(r".*\$\{[A-Z_]+:\?[^}]+\}.*", str(value)), f"{name}.{key} is not required"


def test_worker_and_beat_do_not_inherit_the_http_healthcheck():
    services = _services()
    assert services["beat"]["healthcheck"] == {"disable": True}
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_validates_and_refuses_to_run_without_the_secrets(tmp_path):
    command = _compose_cli()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    base = [*command, "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"), "config"]
    secret_names = {"SECRET_KEY", "AGENTKEY_MASTER_KEYS", "AGENTKEY_AUDIT_KEY"}
    clean = {k: v for k, v in os.environ.items() if k not in secret_names}
    env = {
        **clean,
        "SECRET_KEY": "x" * 50,
        "AGENTKEY_MASTER_KEYS": "k1:" + "A" * 43 + "=",
        "AGENTKEY_AUDIT_KEY": "a1:" + "A" * 43 + "=",
        "POSTGRES_PASSWORD": "pw",
    }

    ok = subprocess.run([*base, "-q"], env=env, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr

    missing = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    refused = subprocess.run(base, env=missing, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert refused.returncode != 0
    assert "set SECRET_KEY" in refused.stderr


# --- Dockerfile -------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim():
    steps = _instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    froms = [args for op, args in steps if op == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert froms[0].endswith("AS build")
    assert any(op == "RUN" and re.search(r"\bpip install \.(\s|$)", args) for op, args in steps)


def test_final_stage_runs_as_a_non_root_user():
    users = [args for op, args in _final_stage() if op == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_final_stage_serves_gunicorn_with_production_settings_and_a_healthcheck():
    final = _final_stage()
    env = " ".join(args for op, args in final if op == "ENV")
    assert "DJANGO_SETTINGS_MODULE=agentkey.settings.production" in env
    [cmd] = [args for op, args in final if op == "CMD"]
    words = json.loads(cmd)  # exec form: a JSON array
    assert words[:2] == ["gunicorn", "agentkey.wsgi"]
    assert words[words.index("--bind") + 1] == "0.0.0.0:8000"
    [check] = [args for op, args in final if op == "HEALTHCHECK"]
    probe = json.loads(check.split(" CMD ", 1)[1])
    assert probe[:2] == ["python", "-c"]
    compile(probe[2], "HEALTHCHECK", "exec")
    assert "http://127.0.0.1:8000/healthz" in probe[2]


def test_dockerfile_bakes_in_no_secret():
    for op, args in _instructions():
        if op in ("ENV", "ARG", "LABEL"):
            assert not SECRET_NAMES.search(args), f"{op} {args}"
        if op == "RUN" and SECRET_NAMES.search(args):
            assert "collectstatic" in args, f"a secret-looking value outside the collectstatic step: {args}"
    assignments = dict(
        w.split("=", 1) for w in shlex.split(_collectstatic_run()) if re.match(r"^[A-Z_]+=", w)
    )
    assert "not-a-secret" in assignments["SECRET_KEY"]
    for name in ("AGENTKEY_MASTER_KEYS", "AGENTKEY_AUDIT_KEY"):
        key_id, _, material = assignments[name].partition(":")
        assert key_id == "build", name
        assert base64.b64decode(material) == bytes(32), name


def test_the_build_time_collectstatic_step_works_without_database_or_redis(tmp_path):
    """Run the Dockerfile's collectstatic with exactly its throwaway environment."""
    words = shlex.split(_collectstatic_run().split("&&")[0])
    assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    command = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    assert command[:3] == ["python", "manage.py", "collectstatic"]
    static, scratch = tmp_path / "static", tmp_path / "var"
    env = {
        "PATH": os.environ.get("PATH", ""),
        **assignments,
        "AGENTKEY_STATIC_ROOT": str(static),
        "AGENTKEY_VAR_DIR": str(scratch),
    }
    done = subprocess.run(
        [sys.executable, *command[1:]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (static / "admin").is_dir()
    assert not scratch.exists(), "collectstatic generated local secrets into the image"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", ".env", "tests"} <= ignored
