"""Start, health-check and stop the server under test (echo or semroute) as a subprocess.

Only 127.0.0.1 is ever used: the load generator refuses other targets so a
benchmark cannot be pointed at someone else's service by accident.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1"}
SERVICE_NAME = "semroute.v1.RouterService"


def parse_target(target: str) -> str:
    """Normalize ``host:port`` to ``127.0.0.1:port``; refuse anything not on loopback."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {target!r} is not HOST:PORT")
    if host not in LOCAL_HOSTS:
        raise ValueError(
            f"target host {host!r} refused: the load generator only targets 127.0.0.1 "
            "(run it on the server's host, or port-forward the service to 127.0.0.1)"
        )
    return f"{LOCAL_HOSTS[host]}:{int(port)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    kind: str
    target: str
    proc: subprocess.Popen[bytes]
    cmd: list[str]
    log_path: Path
    startup_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _semroute_argv() -> list[str]:
    """The `semroute` console script of this interpreter's environment, else the module."""
    beside = Path(sys.executable).with_name("semroute")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("semroute")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from semroute.cli import main; sys.exit(main())"]


def server_command(
    kind: str,
    port: int,
    *,
    config: str | None = None,
    workers: int = 1,
    template: str | None = None,
) -> list[str]:
    """The argv that starts ``kind`` on 127.0.0.1:port.

    ``template`` overrides it: a shell-like string with {host} {port} {config}
    {workers} {python} placeholders, for servers started some other way.
    """
    if template:
        return shlex.split(
            template.format(
                host="127.0.0.1",
                port=port,
                config=config or "",
                workers=workers,
                python=sys.executable,
            )
        )
    if kind == "echo":
        return [
            sys.executable,
            "-m",
            "benchmarks.echo_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    if kind == "semroute":
        argv = [*_semroute_argv(), "serve", "--host", "127.0.0.1", "--port", str(port)]
        if config:  # else the server's default (configs/default.yaml)
            argv += ["--config", str(config)]
        return [*argv, "--workers", str(workers)]
    raise ValueError(f"unknown server kind {kind!r} (echo or semroute)")


def check_health(target: str, timeout: float = 1.0) -> str:
    """The health status name of the server ('' overall, else the RouterService entry)."""
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        status = "UNKNOWN"
        for service in ("", SERVICE_NAME):
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            except grpc.RpcError as e:
                status = e.code().name
                continue
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            if status == "SERVING":
                return status
        return status


def wait_serving(target: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Poll grpc.health.v1 until SERVING; returns seconds waited. Raises on exit or timeout."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before SERVING")
        last = check_health(target, timeout=1.0)
        if last == "SERVING":
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"server at {target} not SERVING after {timeout:.0f}s (last: {last})")


def start_server(
    kind: str,
    *,
    port: int = 0,
    config: str | None = None,
    workers: int = 1,
    template: str | None = None,
    timeout: float = 180.0,
) -> ServerHandle:
    """Start ``kind`` in its own process group on 127.0.0.1 and wait until it is SERVING."""
    port = port or free_port()
    cmd = server_command(kind, port, config=config, workers=workers, template=template)
    log_fd, log_name = tempfile.mkstemp(prefix=f"loadgen-{kind}-", suffix=".log")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with os.fdopen(log_fd, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = ServerHandle(kind, f"127.0.0.1:{port}", proc, cmd, Path(log_name))
    try:
        handle.startup_s = wait_serving(handle.target, timeout, proc)
    except BaseException as e:
        stop_server(handle, keep_log=True)
        raise RuntimeError(
            f"{kind} server failed to start: {e} (log: {handle.log_path})\n{handle.log_tail()}"
        ) from e
    return handle


def stop_server(handle: ServerHandle, grace: float = 15.0, keep_log: bool = False) -> int | None:
    """SIGTERM the server (graceful drain), then SIGKILL its process group if it lingers.

    The server's log is deleted unless ``keep_log`` (a failed start keeps it for reading).
    """
    proc = handle.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # The server's own process group (start_new_session): catches leftover workers.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5)
    if not keep_log:
        handle.log_path.unlink(missing_ok=True)
    return proc.returncode
