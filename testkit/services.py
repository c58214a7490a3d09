"""Real storage servers for the tests, each started as its own process on a free loopback port.

- S3: moto in server mode;
- Azure Blob: Azurite (npm package, installed into ./node_modules by .ci/run);
- Google Cloud Storage: gcp-storage-emulator.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (not a secret; the same for every Azurite install).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_tls(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{name} exited with {process.returncode} before listening on {port}"
            raise RuntimeError(msg)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    msg = f"{name} did not listen on port {port} within {timeout}s"
    raise RuntimeError(msg)


@dataclass
class Service:
    """A running server process and the fsspec options that reach it."""

    name: str
    process: subprocess.Popen
    port: int
    storage_options: dict = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, grace_seconds: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace_seconds`; reaped."""
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _start(name: str, command: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    wait_for_port(port, process, name)
    return process


def start_s3() -> Service:
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = _start("moto S3 server", command, port)
    options = {"key": "testing-key-id", "secret": "testing-secret-key-do-not-log",
               "endpoint_url": f"http://127.0.0.1:{port}",
               "client_kwargs": {"region_name": "eu-west-1"}}
    return Service("s3", process, port, options)


def azurite_command() -> list[str]:
    local = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return [str(local)]
    found = shutil.which("azurite-blob")
    if found:
        return [found]
    msg = "Azurite is not installed: run `npm install` in the repository (see .ci/run)"
    raise RuntimeError(msg)


def start_azurite(workdir: Path) -> Service:
    port = free_port()
    command = [*azurite_command(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
               "--location", str(workdir), "--skipApiVersionCheck", "--loose", "--silent"]
    process = _start("Azurite", command, port)
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                  f"AccountKey={AZURITE_KEY};"
                  f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    return Service("azure", process, port, {"connection_string": connection})


def start_gcs() -> Service:
    port = free_port()
    executable = Path(sys.executable).with_name("gcp-storage-emulator")
    command = [str(executable), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    process = _start("GCS emulator", command, port)
    return Service("gcs", process, port,
                   {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"})
