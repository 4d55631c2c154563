"""Where the CPU goes: per-component CPU time read from /proc around a phase.

The components are the processes the local stack recorded in ``<data>/run/*.pid``
(each service, PostgreSQL, Kafka, Redis), each with all its descendants (worker
processes, PostgreSQL backends), plus this load generator; every other process on the
machine is ``other``, which is how contention (say, a test suite running meanwhile)
shows up. The difference of utime+stime between two snapshots, divided by the phase's
wall time, is the cores a component used; divided by the requests, the CPU milliseconds
each request cost it.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BENCH = "bench"
OTHER = "other"


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


def _roots(run_dir: Path | None) -> dict[int, str]:
    roots = {os.getpid(): BENCH}
    if run_dir is not None and run_dir.is_dir():
        for pid_file in run_dir.glob("*.pid"):
            try:
                roots[int(pid_file.read_text().split()[0])] = pid_file.stem
            except (OSError, ValueError, IndexError):
                continue
    return roots


def snapshot(run_dir: Path | None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes, per component."""
    procs = _processes()
    roots = _roots(run_dir)
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


def usage(
    before: dict[str, float], after: dict[str, float], wall_s: float, requests: int
) -> dict[str, dict[str, float]]:
    """Cores used and CPU ms per request, per component, between two snapshots.

    A process that exited between the snapshots drops out of ``after``; a negative
    difference is clamped to 0.
    """
    out: dict[str, dict[str, float]] = {}
    for group in sorted(set(before) | set(after)):
        used_s = max(0.0, after.get(group, 0.0) - before.get(group, 0.0))
        out[group] = {
            "cores": used_s / wall_s if wall_s > 0 else 0.0,
            "cpu_ms_per_payment": (used_s * 1000.0 / requests) if requests else 0.0,
        }
    return out
