"""Production settings refuse to start misconfigured; the embedded default needs nothing."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = {
    "SECRET_KEY": "s" * 50 + "-not-a-real-secret-but-long-enough",
    "ALLOWED_HOSTS": "agentkey.example.com",
    "AGENTKEY_MASTER_KEYS": "k1:" + base64.b64encode(b"\x01" * 32).decode(),
    "AGENTKEY_AUDIT_KEY": "a1:" + base64.b64encode(b"\x02" * 32).decode(),
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "TRUSTED_PROXY_COUNT": "1",
}


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AGENTKEY_VAR_DIR": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


REQUIRED = [
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "AGENTKEY_MASTER_KEYS",
    "AGENTKEY_AUDIT_KEY",
    "DATABASE_URL",
    "REDIS_URL",
]


@pytest.mark.parametrize("missing", REQUIRED)
def test_production_refuses_to_start_without(missing, tmp_path):
    env = {k: v for k, v in GOOD.items() if k != missing} | {
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.production"
    }
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "Production settings refuse to start without" in result.stderr
    assert missing in result.stderr


def test_production_refuses_sqlite(tmp_path):
    env = GOOD | {"DJANGO_SETTINGS_MODULE": "agentkey.settings.production", "DATABASE_URL": "sqlite:///x.db"}
    assert manage("check", env=env, tmp_path=tmp_path).returncode != 0


def test_production_refuses_a_malformed_master_key_without_echoing_it(tmp_path):
    material = base64.b64encode(b"\x02" * 31).decode()
    env = GOOD | {
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.production",
        "AGENTKEY_MASTER_KEYS": f"k1:{material}",
    }
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "must decode to 32 bytes" in result.stderr
    assert material not in result.stderr + result.stdout


def test_secrets_can_come_from_files(tmp_path):
    key_file = tmp_path / "master.keys"
    key_file.write_text(GOOD["AGENTKEY_MASTER_KEYS"] + "\n")
    env = {k: v for k, v in GOOD.items() if k != "AGENTKEY_MASTER_KEYS"} | {
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.production",
        "AGENTKEY_MASTER_KEYS_FILE": str(key_file),
    }
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_complete_production_settings_pass_the_deploy_checks(tmp_path):
    env = GOOD | {"DJANGO_SETTINGS_MODULE": "agentkey.settings.production"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout


def test_the_embedded_default_needs_no_configuration(tmp_path):
    result = manage("check", env={"DJANGO_SETTINGS_MODULE": "agentkey.settings.base"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "vault.W001" in result.stderr + result.stdout, "the generated master key is called out"
    key_file = tmp_path / "master.keys"
    assert key_file.exists()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_a_bad_rate_limit_setting_is_a_check_error(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "agentkey.settings.base", "AGENTKEY_RATELIMIT_CREDENTIAL": "lots"}
    result = manage("check", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "AGENTKEY_RATELIMIT_CREDENTIAL" in result.stderr


def test_https_redirect_without_a_trusted_proxy_is_a_deploy_warning(tmp_path):
    env = GOOD | {"DJANGO_SETTINGS_MODULE": "agentkey.settings.production", "TRUSTED_PROXY_COUNT": "0"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "agentkey.W001" in result.stderr
