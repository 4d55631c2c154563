"""A small client for the local stack's supervisord, over its private unix socket.

supervisord speaks XML-RPC on ``/RPC2`` of its HTTP server; services.sh configures that
server on a unix socket only (``$DATA/run/supervisord.sock``, mode 0700), never on TCP.
The standard library's xmlrpc client needs just a transport that dials the socket.

Used by wait_health.py (is the program still starting, backing off, given up?) and
service_status.py (state, pid and uptime of every program). supervisorctl stays the
tool for people and for services.sh's start/stop/restart.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from dataclasses import dataclass

CALL_TIMEOUT_S = 2.0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, socket_path: str, timeout_s: float) -> None:
        super().__init__()
        self._socket_path = socket_path
        self._timeout_s = timeout_s

    def make_connection(self, host: tuple[str, dict[str, str]] | str) -> http.client.HTTPConnection:
        return _UnixHTTPConnection(self._socket_path, self._timeout_s)


@dataclass(frozen=True)
class ProcessInfo:
    """What supervisord knows about one program (a subset of getProcessInfo)."""

    name: str
    state: str  # STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL, UNKNOWN
    pid: int  # 0 unless STARTING, RUNNING or STOPPING
    uptime_s: int  # 0 unless running
    description: str  # supervisord's own one-line summary ("pid 12, uptime 0:01:02", ...)
    log_path: str


class SupervisorError(Exception):
    """supervisord did not answer (not running, socket gone) or refused the call."""


class Supervisor:
    """Read-only view of one supervisord (the calls services.sh's helpers need)."""

    def __init__(self, socket_path: str, *, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=_UnixTransport(socket_path, timeout_s)
        )

    def _call(self, method: str, *args: object) -> object:
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise SupervisorError(f"supervisord {method}: {exc}") from exc

    def pid(self) -> int:
        """supervisord's own pid."""
        return int(str(self._call("getPID")))

    def process(self, name: str) -> ProcessInfo:
        return _process_info(self._call("getProcessInfo", name))

    def processes(self) -> dict[str, ProcessInfo]:
        infos = self._call("getAllProcessInfo")
        if not isinstance(infos, list):
            raise SupervisorError(f"supervisord getAllProcessInfo: unexpected {infos!r}")
        return {info.name: info for info in map(_process_info, infos)}


def _process_info(raw: object) -> ProcessInfo:
    if not isinstance(raw, dict):
        raise SupervisorError(f"supervisord: unexpected process info {raw!r}")
    pid = int(raw.get("pid", 0))
    start, now = int(raw.get("start", 0)), int(raw.get("now", 0))
    return ProcessInfo(
        name=str(raw.get("name", "")),
        state=str(raw.get("statename", "UNKNOWN")),
        pid=pid,
        uptime_s=max(0, now - start) if pid and start else 0,
        description=str(raw.get("description", "")),
        log_path=str(raw.get("stdout_logfile", "")),
    )
