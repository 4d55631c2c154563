"""Print the local stack's services: supervisord's view of each and its gRPC health.

    python deploy/local/service_status.py [--supervisor SOCKET] NAME=HOST:PORT ...

One line per service: its address, supervisord state, pid and uptime, then what the
service itself says on grpc.health.v1: the overall status (service "") and every
``payrail.dependency.<name>`` and ``payrail.loop.<name>`` entry, e.g.

    payment_svc   127.0.0.1:50052  RUNNING  pid 1234  up 0:03:12  SERVING  postgres=SERVING ...

A program that is not running shows supervisord's description and the tail of its log;
a service that does not answer health says so. The entries come from Health/List, which
payrail's services implement (payrail_common.grpcserver.ListingHealthServicer); for a
server without it each name in DEPENDENCY_NAMES is asked for instead, and the ones it
does not know (NOT_FOUND) are left out. Every call
has a short deadline and the services are asked in parallel, so a hung (e.g. SIGSTOPped)
service costs about a second, not the whole command. Used by services.sh status.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from supervisor_rpc import ProcessInfo, Supervisor, SupervisorError

# Every probe name the services' DependencyMonitors publish (see each bootstrap.py);
# tests/e2e/test_supervisor.py fails when a bootstrap grows a probe missing here.
DEPENDENCY_NAMES = (
    "postgres",
    "redis",
    "kafka",
    "payment_svc",
    "consumer_insights",
    "gateway_svc",
)
DEPENDENCY_PREFIX = "payrail.dependency."
LOOP_PREFIX = "payrail.loop."
CALL_DEADLINE_S = 1.0
LOG_TAIL_LINES = 5
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
Status = health_pb2.HealthCheckResponse.ServingStatus


@dataclass(frozen=True)
class Health:
    overall: str  # SERVING, NOT_SERVING, ... or "no answer (<gRPC code>)"
    entries: tuple[tuple[str, str], ...] = ()  # (short name, status), in a stable order


def _code_name(exc: grpc.RpcError) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    return str(code.name) if code is not None else str(exc)


def query_health(target: str) -> Health:
    """The service's overall health and its dependency entries."""
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=CALL_DEADLINE_S)
        except grpc.RpcError as exc:
            return Health(f"no answer ({_code_name(exc)})")
        overall = str(Status.Name(reply.status))
        listed = _list_entries(stub)
        if listed is not None:
            return Health(overall, tuple(listed))
        return Health(overall, tuple(_check_each(stub, DEPENDENCY_NAMES)))


def _list_entries(stub: health_pb2_grpc.HealthStub) -> list[tuple[str, str]] | None:
    """Every dependency and supervised-loop entry through Health/List (payrail's
    services implement it); None when the server does not."""
    try:
        reply = stub.List(health_pb2.HealthListRequest(), timeout=CALL_DEADLINE_S)
    except grpc.RpcError:
        return None
    entries = []
    for name, status in sorted(reply.statuses.items()):
        for prefix in (DEPENDENCY_PREFIX, LOOP_PREFIX):
            if name.startswith(prefix):
                short = name.removeprefix(DEPENDENCY_PREFIX).replace(LOOP_PREFIX, "loop:")
                entries.append((short, str(Status.Name(status.status))))
    return entries


def _check_each(stub: health_pb2_grpc.HealthStub, names: Sequence[str]) -> list[tuple[str, str]]:
    entries = []
    for name in names:
        request = health_pb2.HealthCheckRequest(service=DEPENDENCY_PREFIX + name)
        try:
            reply = stub.Check(request, timeout=CALL_DEADLINE_S)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: not one of its own
                entries.append((name, f"error {_code_name(exc)}"))
            continue
        entries.append((name, str(Status.Name(reply.status))))
    return entries


def log_tail(path: str, lines: int) -> list[str]:
    if not path:
        return []
    try:
        with Path(path).open(errors="replace") as f:
            return [line.rstrip() for line in deque(f, maxlen=lines)]
    except OSError:
        return []


def render(name: str, target: str, info: ProcessInfo | None, health: Health) -> list[str]:
    if info is None:
        process = f"{'-':<9} {'':<10} {'':<12}"
    elif info.pid:
        uptime = f"up {timedelta(seconds=info.uptime_s)}"
        process = f"{info.state:<9} {'pid ' + str(info.pid):<10} {uptime:<12}"
    else:
        process = f"{info.state:<9} {'':<10} {'':<12}"
    entries = " ".join(f"{key}={value}" for key, value in health.entries)
    lines = [f"{name:<18} {target:<16} {process} {health.overall:<12} {entries}".rstrip()]
    if info is not None and info.state not in ("RUNNING", "STARTING"):
        if info.description:
            lines.append(f"    {info.description}")
        for line in log_tail(info.log_path, LOG_TAIL_LINES):
            lines.append(f"    | {line}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("services", nargs="+", metavar="NAME=HOST:PORT")
    parser.add_argument("--supervisor", default=None, help="supervisord's unix socket")
    args = parser.parse_args()
    services: list[tuple[str, str]] = []
    for spec in args.services:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            parser.error(f"expected NAME=HOST:PORT, got {spec!r}")
        services.append((name, target))

    infos: dict[str, ProcessInfo] | None = None
    if args.supervisor:
        supervisor = Supervisor(args.supervisor)
        try:
            infos = supervisor.processes()
            print(f"{'supervisord':<18} RUNNING  pid {supervisor.pid()}  ({args.supervisor})")
        except SupervisorError as exc:
            print(f"{'supervisord':<18} not answering: {exc}")
    else:
        print(f"{'supervisord':<18} not running")

    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        healths = list(pool.map(query_health, [target for _, target in services]))
    for (name, target), health in zip(services, healths, strict=True):
        info = infos.get(name) if infos is not None else None
        for line in render(name, target, info, health):
            print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
