"""Where the CPU goes: per-component CPU time read from /proc around a phase.

The components are the processes the local stack runs: PostgreSQL, Kafka and Redis
(recorded in ``<data>/run/*.pid``), each service (a program of the stack's supervisord,
found from ``<data>/run/supervisord.conf``, or a ``<name>.pid`` of the older scheme), each
with all its descendants (worker processes, PostgreSQL backends), plus this load
generator; every other process on the machine is ``other``, which is how contention (say,
a test suite running meanwhile) shows up. The difference of utime+stime between two
snapshots, divided by the phase's wall time, is the cores a component used; divided by
the payments, the CPU milliseconds each payment cost it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BENCH = "bench"
OTHER = "other"

# The processes of the stack grouped as the issue names them ("sandboxes", "insights",
# "load generator"); a group not listed keeps its own name.
COMPONENT_OF = {
    "consumer_insights": "insights",
    "sandbox_json": "sandboxes",
    "sandbox_soap": "sandboxes",
    BENCH: "load generator",
}
# The order of the per-component tables; anything else follows, then ``other``.
COMPONENT_ORDER = (
    "payment_svc",
    "gateway_svc",
    "consumer_svc",
    "insights",
    "sandboxes",
    "postgres",
    "kafka",
    "redis",
    "load generator",
)


def component(group: str) -> str:
    if group.startswith("kafka-"):  # the nodes of a multi-broker stack
        return "kafka"
    return COMPONENT_OF.get(group, group)


def by_component(groups: Mapping[str, float]) -> dict[str, float]:
    """Sum per-group figures into the components, in table order (``other`` last)."""
    sums: dict[str, float] = {}
    for group, value in groups.items():
        name = component(group)
        sums[name] = sums.get(name, 0.0) + value
    known = [c for c in COMPONENT_ORDER if c in sums]
    rest = sorted(c for c in sums if c not in COMPONENT_ORDER and c != OTHER)
    ordered = known + rest + ([OTHER] if OTHER in sums else [])
    return {name: sums[name] for name in ordered}


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far) of every live process."""
    out: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after the parenthesised command name: state, ppid, ... utime (14), stime (15).
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS_PER_S)
    return out


def _module_of(argv: list[str]) -> str | None:
    """The module of a ``python -m MODULE ...`` command line."""
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1]
    return None


def supervisord_programs(conf_text: str) -> dict[str, str]:
    """module -> program name, from a supervisord.conf that services.sh rendered."""
    programs: dict[str, str] = {}
    name = ""
    for line in conf_text.splitlines():
        header = re.match(r"\[program:([^\]]+)\]", line.strip())
        if header:
            name = header.group(1)
        elif name and line.startswith("command="):
            module = _module_of(line.removeprefix("command=").split())
            if module:
                programs[module] = name
    return programs


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _roots(run_dir: Path | None, procs: Mapping[int, tuple[int, float]]) -> dict[int, str]:
    roots = {os.getpid(): BENCH}
    if run_dir is None or not run_dir.is_dir():
        return roots
    for pid_file in run_dir.glob("*.pid"):
        pid = _read_pid(pid_file)
        if pid is not None:
            roots[pid] = pid_file.stem
    # Services under supervisord: its children, named by the module they run.
    supervisor = _read_pid(run_dir / "supervisord.pid")
    conf = run_dir / "supervisord.conf"
    if supervisor is not None and conf.is_file():
        try:
            programs = supervisord_programs(conf.read_text())
        except OSError:
            programs = {}
        for pid, (ppid, _) in procs.items():
            if ppid == supervisor:
                module = _module_of(_cmdline(pid))
                if module in programs:
                    roots[pid] = programs[module]
    return roots


def snapshot(run_dir: Path | None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes, per group."""
    procs = _processes()
    roots = _roots(run_dir, procs)
    totals: dict[str, float] = {}
    for pid, (_, cpu_s) in procs.items():
        group, current, hops = OTHER, pid, 0
        while current > 1 and hops < 64:  # walk up to a known root, if any
            if current in roots:
                group = roots[current]
                break
            current = procs.get(current, (0, 0.0))[0]
            hops += 1
        totals[group] = totals.get(group, 0.0) + cpu_s
    return totals


def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a process that exited meanwhile drops
    out of ``after``: a negative difference is clamped to 0)."""
    return {
        group: max(0.0, after.get(group, 0.0) - before.get(group, 0.0))
        for group in sorted(set(before) | set(after))
    }


def usage(
    before: dict[str, float], after: dict[str, float], wall_s: float, requests: int
) -> dict[str, dict[str, float]]:
    """Cores used and CPU ms per request, per group, between two snapshots."""
    out: dict[str, dict[str, float]] = {}
    for group, used_s in used(before, after).items():
        out[group] = {
            "cores": used_s / wall_s if wall_s > 0 else 0.0,
            "cpu_ms_per_payment": (used_s * 1000.0 / requests) if requests else 0.0,
        }
    return out


def per_payment(used_s: Mapping[str, float], payments: int, wall_s: float) -> dict[str, Any]:
    """CPU per settled payment from the CPU seconds of a window and the payments settled
    in it: per component (ms), the total over the platform and the generator, and
    ``other`` (everything else on the machine) apart, since it is not the platform's."""
    comps = by_component(used_s)
    ms = {name: (s * 1000.0 / payments if payments else float("nan")) for name, s in comps.items()}
    platform_s = sum(s for name, s in comps.items() if name != OTHER)
    return {
        "payments": payments,
        "wall_s": wall_s,
        "cpu_s": dict(comps),
        "ms_per_payment": ms,
        "total_ms_per_payment": platform_s * 1000.0 / payments if payments else float("nan"),
        "other_ms_per_payment": ms.get(OTHER, 0.0),
        "cores": platform_s / wall_s if wall_s > 0 else 0.0,
    }
