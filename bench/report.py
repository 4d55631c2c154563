"""The report: one JSON document, a text summary, a PNG chart, and docs/performance.md.

The JSON is the source of truth; the text summary, the chart and the figures section of
docs/performance.md are all rendered from it, so ``python -m bench docs <report.json>``
refreshes the documentation from any run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench import cpu
from bench.judge import SETTLED_CONFIRM_S
from bench.runner import BenchRun, config_dict
from bench.stats import json_safe

DOCS_BEGIN = "<!-- bench:figures:begin (rendered by `python -m bench docs`; do not edit) -->"
DOCS_END = "<!-- bench:figures:end -->"

# The issue's targets.
TARGET_CREATE_RATE = 1000.0
TARGET_CREATE_P99_MS = 50.0
TARGET_ECHO_RATIO = 0.30
TARGET_E2E_RATE = 500.0
TARGET_E2E_P50_MS = 100.0
TARGET_E2E_P99_MS = 500.0
# Issue 15's targets, as ratios: settled throughput and CreatePayment alone to this run's
# echo baseline; CPU per settled payment to the A/B base's at the same offered rate.
TARGET_SETTLED_OVER_ECHO = 0.15
TARGET_ALONE_OVER_ECHO = 0.35
TARGET_CPU_OVER_BASE = 0.20


def build(run: BenchRun) -> dict[str, Any]:
    """The JSON document of a finished run (NaN becomes null)."""
    doc: dict[str, Any] = {
        "schema": "payrail-bench/1",
        "config": config_dict(run.config),
        **run.results,
        "phases": run.phases,
        "series": run.series,
        "backlog": [{"t_s": t, "rows": n, "phase": p} for t, n, p in run.backlog],
        "consumer_lag": [{"t_s": t, "messages": n, "phase": p} for t, n, p in run.lag],
    }
    doc["ratios"] = ratios(doc)
    doc["targets"] = targets(doc)
    doc["issue_targets"] = issue_targets(doc)
    return json_safe(doc)  # type: ignore[no-any-return]


def phase(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    for p in doc.get("phases", []):
        if p["name"] == name:
            return p  # type: ignore[no-any-return]
    return None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def ratios(doc: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    sustained = phase(doc, "sustained")
    rate = _num(sustained["achieved_rate"]) if sustained else math.nan
    found = _num(doc.get("step_sustainable_rate"))
    echo = _num((doc.get("echo") or {}).get("sustainable_rate"))
    pg_tps = _num((doc.get("pgbench") or {}).get("tps"))
    if echo > 0:
        out["step_rate_over_echo"] = found / echo
        out["sustained_rate_over_echo"] = rate / echo
    if pg_tps > 0:
        out["step_rate_over_pgbench"] = found / pg_tps
        out["sustained_rate_over_pgbench"] = rate / pg_tps
    pg_latency = _num((doc.get("pgbench") or {}).get("latency_avg_ms"))
    if sustained and pg_latency > 0:
        out["create_p50_over_pgbench_latency"] = _num(sustained["latency"]["p50_ms"]) / pg_latency
    settled = doc.get("settled") or {}
    if echo > 0 and settled:
        out["settled_rate_over_echo"] = _num(settled.get("rate")) / echo
    alone = doc.get("create_alone") or {}
    if echo > 0 and "rate" in alone:
        out["alone_rate_over_echo"] = _num(alone["rate"]) / echo
    cpu_ratio = cpu_over_base(doc)
    if cpu_ratio is not None:
        out["cpu_per_payment_over_base"] = cpu_ratio
    return {k: v for k, v in out.items() if not math.isnan(v)}


def cpu_over_base(doc: dict[str, Any]) -> float | None:
    """This run's CPU per settled payment over the A/B base's, when both exist at the same
    offered rate."""
    mine = doc.get("cpu_per_payment") or {}
    base = doc.get("cpu_baseline") or {}
    total = _num(mine.get("total_ms_per_payment"))
    base_total = _num(base.get("total_ms_per_payment"))
    if math.isnan(total) or math.isnan(base_total) or base_total <= 0:
        return None
    if _num(mine.get("offered_rate")) != _num(base.get("offered_rate")):
        return None
    return total / base_total


def ratio_verdict(ratio: float, target: float, *, at_least: bool) -> tuple[str, str]:
    """pass/miss of a ratio against its target, and by how much.

    ``at_least``: the ratio must reach the target (throughput); otherwise it must stay at
    or below it (cost)."""
    if math.isnan(ratio) or target <= 0:
        return "n/a", ""
    if at_least:
        if ratio >= target:
            return "pass", f"{ratio / target:.2f}x the target"
        if ratio <= 0:
            return "miss", "nothing passed"
        return "miss", f"{ratio / target:.2f}x the target; needs {target / ratio:.1f}x more"
    if ratio <= target:
        return "pass", f"{target / ratio:.2f}x under the bound" if ratio > 0 else "pass"
    return "miss", f"{ratio / target:.2f}x the bound; needs {ratio / target:.1f}x less"


def issue_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's three figures as ratios: measured, ratio, target, result, by how much."""
    rows: list[dict[str, Any]] = []
    echo = _num((doc.get("echo") or {}).get("sustainable_rate"))
    echo_text = f"echo {echo:,.0f}/s" if echo > 0 else "no echo baseline in this run"
    settled = doc.get("settled")
    if settled is not None:
        rate = _num(settled.get("rate"))
        confirmed = bool(settled.get("confirmed"))
        if confirmed:
            duration = _num(settled.get("confirm_duration_s"))
            measured = (
                f"{rate:,.1f}/s for {duration:.0f} s: CreatePayment p99 "
                f"{_ms(settled.get('create_p99_ms'))} ms, accepted->COMPLETED p99 "
                f"{_ms(settled.get('e2e_p99_ms'))} ms, {settled.get('completed', 0)} of "
                f"{settled.get('accepted', 0)} accepted COMPLETED, nothing shed"
            )
        else:
            duration = math.nan
            tried = "; ".join(
                f"{_num(c['rate']):,.0f}/s: {c['why']}" for c in settled.get("confirmations", [])
            )
            measured = (
                f"no rate confirmed (search: {_num(settled.get('step_rate')):,.0f}/s"
                + (f"; confirmation {tried}" if tried else "")
                + ")"
            )
        ratio = rate / echo if echo > 0 and confirmed else (0.0 if echo > 0 else math.nan)
        result, by = ratio_verdict(ratio, TARGET_SETTLED_OVER_ECHO, at_least=True)
        if confirmed and duration < SETTLED_CONFIRM_S:
            by = (by + "; " if by else "") + (
                f"confirmation {duration:.0f} s, shorter than the target's "
                f"{SETTLED_CONFIRM_S / 60:.0f} minutes"
            )
            if result == "pass":
                result = "pass (short run)"
        rows.append(
            {
                "figure": "settled throughput",
                "measured": measured,
                "ratio": f"{ratio:.3f}x echo" if not math.isnan(ratio) else "-",
                "target": f">= {TARGET_SETTLED_OVER_ECHO:.2f}x echo ({echo_text})",
                "result": result,
                "by": by,
            }
        )
    mine = doc.get("cpu_per_payment")
    if mine:
        base = doc.get("cpu_baseline") or {}
        total = _num(mine.get("total_ms_per_payment"))
        settle_note = ""
        if mine.get("outstanding") or mine.get("failed"):
            settle_note = (
                f"; NOT all settled: {mine.get('outstanding', 0)} outstanding, "
                f"{mine.get('failed', 0)} failed"
            )
        measured = (
            f"{total:.1f} CPU ms per payment at {_num(mine.get('offered_rate')):g}/s offered "
            f"({mine.get('payments', 0)} settled in {_num(mine.get('wall_s')):.0f} s{settle_note})"
        )
        ratio_value = cpu_over_base(doc)
        if ratio_value is not None:
            result, by = ratio_verdict(ratio_value, TARGET_CPU_OVER_BASE, at_least=False)
            ratio_text = f"{ratio_value:.2f}x base"
            target = (
                f"<= {TARGET_CPU_OVER_BASE:.2f}x base (`{base.get('commit', '?')}`: "
                f"{_num(base.get('total_ms_per_payment')):.1f} ms)"
            )
        else:
            result, ratio_text = "n/a", "-"
            target = f"<= {TARGET_CPU_OVER_BASE:.2f}x the A/B base (d99f874)"
            by = (
                f"base measured at {_num(base.get('offered_rate')):g}/s, not the same rate"
                if base
                else "no A/B base given (`python -m bench ab`, or `--cpu-baseline REPORT`)"
            )
        rows.append(
            {
                "figure": "CPU per settled payment",
                "measured": measured,
                "ratio": ratio_text,
                "target": target,
                "result": result,
                "by": by,
            }
        )
    alone = doc.get("create_alone")
    if alone is not None and "rate" in alone:
        rate = _num(alone["rate"])
        best = next((s for s in alone.get("steps", []) if s["pass"] and s["rate"] == rate), None)
        p99 = _num(best["summary"]["latency"]["p99_ms"]) if best else math.nan
        ratio_value = rate / echo if echo > 0 else math.nan
        result, by = ratio_verdict(ratio_value, TARGET_ALONE_OVER_ECHO, at_least=True)
        rows.append(
            {
                "figure": "CreatePayment alone (pipeline stopped)",
                "measured": f"{rate:,.0f}/s with p99 {_ms(p99)} ms",
                "ratio": f"{ratio_value:.3f}x echo" if not math.isnan(ratio_value) else "-",
                "target": f">= {TARGET_ALONE_OVER_ECHO:.2f}x echo at p99 <= "
                f"{_num(doc.get('config', {}).get('p99_limit_ms')):g} ms",
                "result": result,
                "by": by,
            }
        )
    return rows


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sustained = phase(doc, "sustained")
    if sustained:
        rate = _num(sustained["achieved_rate"])
        p99 = _num(sustained["latency"]["p99_ms"])
        rows.append(
            {
                "target": f"CreatePayment sustained >= {TARGET_CREATE_RATE:,.0f}/s",
                "measured": f"{rate:,.0f}/s",
                "result": _verdict(rate >= TARGET_CREATE_RATE),
                "by": f"{rate / TARGET_CREATE_RATE:.2f}x of target",
            }
        )
        rows.append(
            {
                "target": f"CreatePayment p99 <= {TARGET_CREATE_P99_MS:g} ms at that rate",
                "measured": f"{p99:.1f} ms at {rate:,.0f}/s",
                "result": _verdict(p99 <= TARGET_CREATE_P99_MS),
                "by": f"{p99 / TARGET_CREATE_P99_MS:.2f}x of limit",
            }
        )
        backlog = sustained.get("backlog") or {}
        if backlog:
            bounded = _num(backlog.get("max")) <= max(100.0, rate)
            rows.append(
                {
                    "target": "outbox backlog does not grow during the sustained run",
                    "measured": (
                        f"max {backlog['max']:.0f} rows, last {backlog['last']:.0f}, slope "
                        f"{backlog['slope_rows_per_s']:+.2f} rows/s over "
                        f"{sustained['duration_s'] + sustained['warmup_s']:.0f} s"
                    ),
                    "result": _verdict(bounded),
                    "by": "bound: < 1 s of arrivals queued",
                }
            )
            if "consumer_lag_last" in backlog:
                keeps_up = _num(backlog["consumer_lag_slope_per_s"]) <= 0.01 * rate
                rows.append(
                    {
                        "target": "(also) the processing pipeline keeps up at that rate",
                        "measured": (
                            f"consumer lag {backlog['consumer_lag_first']:.0f} -> "
                            f"{backlog['consumer_lag_last']:.0f} messages, slope "
                            f"{backlog['consumer_lag_slope_per_s']:+.1f}/s"
                        ),
                        "result": _verdict(keeps_up),
                        "by": "not an issue target; see the e2e rows",
                    }
                )
    ratio = doc.get("ratios", {}).get("step_rate_over_echo")
    if ratio is not None and not math.isnan(ratio):
        rows.append(
            {
                "target": f"highest sustainable rate >= {TARGET_ECHO_RATIO:.2f}x echo baseline",
                "measured": f"{ratio:.3f}x",
                "result": _verdict(ratio >= TARGET_ECHO_RATIO),
                "by": f"{ratio / TARGET_ECHO_RATIO:.2f}x of target",
            }
        )
    e2e = phase(doc, "e2e")
    if e2e and e2e.get("e2e"):
        p50 = _num(e2e["e2e"]["p50_ms"])
        p99 = _num(e2e["e2e"]["p99_ms"])
        at = _num(e2e["achieved_rate"])
        left = int(_num(e2e.get("e2e_outstanding", 0)) or 0)
        # Accepted at the rate, and every accepted payment seen COMPLETED (those still
        # outstanding at the settle timeout are not in the percentiles: they would be worse).
        good_rate = at >= 0.95 * TARGET_E2E_RATE and left == 0
        note = f", {left} not final after the settle timeout" if left else ""
        rows.append(
            {
                "target": f"accepted->COMPLETED at {TARGET_E2E_RATE:.0f}/s: p50 <= "
                f"{TARGET_E2E_P50_MS:g} ms",
                "measured": f"{p50:.0f} ms at {at:,.0f}/s accepted{note}",
                "result": _verdict(p50 <= TARGET_E2E_P50_MS and good_rate),
                "by": f"{p50 / TARGET_E2E_P50_MS:.2f}x of limit",
            }
        )
        rows.append(
            {
                "target": f"accepted->COMPLETED at {TARGET_E2E_RATE:.0f}/s: p99 <= "
                f"{TARGET_E2E_P99_MS:g} ms",
                "measured": f"{p99:.0f} ms at {at:,.0f}/s accepted{note}",
                "result": _verdict(p99 <= TARGET_E2E_P99_MS and good_rate),
                "by": f"{p99 / TARGET_E2E_P99_MS:.2f}x of limit",
            }
        )
    overload = doc.get("overload")
    if overload:
        shed = sum(overload["shed"].values())
        shed_p99 = _num((overload.get("shed_latency") or {}).get("p99_ms"))
        ok_p99 = _num((overload.get("ok_latency") or {}).get("p99_ms"))
        # Collapse: the answered rate falls well below what was offered while latency runs
        # into the deadlines. Not collapsing means serving it all or shedding fast.
        served = _num(overload["achieved_rate"]) >= 0.9 * _num(overload["rate"])
        fast_shed = shed > 0 and shed_p99 <= 250.0
        timeout_ms = _num(doc.get("config", {}).get("timeout_s")) * 1000.0
        no_collapse = (served or fast_shed) and not ok_p99 >= timeout_ms / 2
        recovery_p99 = _num(overload["recovery_second_half_p99_ms"])
        shed_text = (
            f"{shed} shed ({', '.join(overload['shed'])}), shed p99 {shed_p99:.0f} ms"
            if shed
            else "nothing to shed: every call answered"
        )
        rows.append(
            {
                "target": "overload (1.5x) sheds fast instead of collapsing, then recovers",
                "measured": (
                    f"{_num(overload['achieved_rate']):,.0f} of {_num(overload['rate']):,.0f}/s"
                    f" answered OK, p99 {ok_p99:.0f} ms; {shed_text}; recovery p99 "
                    f"{recovery_p99:.0f} ms (second half)"
                ),
                "result": _verdict(no_collapse and bool(overload["recovered"])),
                "by": "",
            }
        )
    # Shedding under real overload: any phase whose rate was far beyond the system's.
    for p in doc.get("phases", []):
        exhausted = int(p["codes"].get("RESOURCE_EXHAUSTED", 0))
        if p["name"] in ("e2e", "overload") and exhausted:
            err = p.get("error_latency") or {}
            rows.append(
                {
                    "target": f"(also) shedding in the {p['name']} phase at "
                    f"{_num(p['offered_rate']):,.0f}/s offered",
                    "measured": (
                        f"{exhausted} RESOURCE_EXHAUSTED in p50 {_ms(err.get('p50_ms'))} ms / "
                        f"p99 {_ms(err.get('p99_ms'))} ms; {_num(p['achieved_rate']):,.0f}/s "
                        f"accepted with p99 {_ms(p['latency']['p99_ms'])} ms"
                    ),
                    "result": "shown",
                    "by": "",
                }
            )
    return rows


# ---------------------------------------------------------------------------- text


def _ms(value: Any) -> str:
    v = _num(value)
    return "-" if math.isnan(v) else f"{v:.1f}"


def phase_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| phase | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | e2e p50 ms"
        " | e2e p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in doc.get("phases", []):
        lat = p["latency"]
        e2e = p.get("e2e") or {}
        errors = {k: v for k, v in p["codes"].items() if k != "OK"}
        lines.append(
            f"| {p['name']} | {p['offered_rate']:,.0f} | {p['achieved_rate']:,.0f} "
            f"| {_ms(lat['p50_ms'])} | {_ms(lat['p90_ms'])} | {_ms(lat['p99_ms'])} "
            f"| {_ms(lat['p99.9_ms'])} | {_ms(e2e.get('p50_ms'))} | {_ms(e2e.get('p99_ms'))} "
            f"| {', '.join(f'{k} {v}' for k, v in errors.items()) or '-'} |"
        )
    return lines


def split_table(doc: dict[str, Any]) -> list[str]:
    """End-to-end latency in two halves, per phase that saw completions."""
    lines = [
        "| phase | accepted->PROCESSING p50 / p99 ms | PROCESSING->COMPLETED p50 / p99 ms |",
        "|---|---:|---:|",
    ]
    rows = 0
    for p in doc.get("phases", []):
        a = p.get("e2e_to_processing") or {}
        b = p.get("e2e_processing_to_completed") or {}
        if not a or not _num(a.get("count")):
            continue
        rows += 1
        lines.append(
            f"| {p['name']} | {_ms(a['p50_ms'])} / {_ms(a['p99_ms'])} "
            f"| {_ms(b['p50_ms'])} / {_ms(b['p99_ms'])} |"
        )
    return lines if rows else []


def cpu_table(doc: dict[str, Any], name: str = "sustained") -> list[str]:
    p = phase(doc, name)
    if not p or not p.get("cpu"):
        return []
    lines = ["| component | cores used | CPU ms per request |", "|---|---:|---:|"]
    rows = sorted(p["cpu"].items(), key=lambda kv: -_num(kv[1]["cores"]))
    for group, use in rows:
        lines.append(f"| {group} | {use['cores']:.2f} | {use['cpu_ms_per_payment']:.2f} |")
    total = sum(_num(u["cores"]) for _, u in rows)
    lines.append(f"| **total** | **{total:.2f}** | |")
    return lines


def issue_targets_table(doc: dict[str, Any], *, bold: bool = False) -> list[str]:
    rows = doc.get("issue_targets") or []
    if not rows:
        return []
    lines = [
        "| figure | measured | ratio | target | result | by how much |",
        "|---|---|---|---|---|---|",
    ]
    for t in rows:
        result = f"**{t['result']}**" if bold else t["result"]
        lines.append(
            f"| {t['figure']} | {t['measured']} | {t['ratio']} | {t['target']} | {result} "
            f"| {t['by']} |"
        )
    return lines


def cpu_figures(doc: dict[str, Any]) -> dict[str, Any] | None:
    """CPU per payment per component: the cpu phase's (per settled payment, measured
    window), or for reports without one the sustained phase's (per request)."""
    mine = doc.get("cpu_per_payment")
    if mine and mine.get("ms_per_payment"):
        return {
            "source": f"cpu phase, per settled payment, {_num(mine.get('offered_rate')):g}/s",
            "offered_rate": _num(mine.get("offered_rate")),
            "ms": {k: _num(v) for k, v in mine["ms_per_payment"].items()},
            "total_ms": _num(mine.get("total_ms_per_payment")),
            "payments": mine.get("payments", 0),
            "wall_s": _num(mine.get("wall_s")),
            "create_p99_ms": _num(mine.get("create_p99_ms")),
            "e2e_p99_ms": _num(mine.get("e2e_p99_ms")),
            "commit": (doc.get("environment") or {}).get("commit", "?"),
            # The platform's CPU with no load, spread over this rate's payments.
            "idle_ms": _num((mine.get("idle") or {}).get("platform_cores"))
            * 1000.0
            / _num(mine.get("offered_rate")),
        }
    sustained = phase(doc, "sustained")
    if sustained and sustained.get("cpu"):
        per_group = {g: _num(u["cpu_ms_per_payment"]) for g, u in sustained["cpu"].items()}
        ms = cpu.by_component(per_group)
        return {
            "source": "sustained phase, per request (an older report: no cpu phase)",
            "offered_rate": _num(sustained.get("offered_rate")),
            "ms": ms,
            "total_ms": sum(v for k, v in ms.items() if k != cpu.OTHER),
            "payments": sustained.get("ok", 0),
            "wall_s": _num(sustained.get("duration_s")),
            "create_p99_ms": _num(sustained["latency"]["p99_ms"]),
            "e2e_p99_ms": _num((sustained.get("e2e") or {}).get("p99_ms")),
            "commit": (doc.get("environment") or {}).get("commit", "?"),
            "idle_ms": math.nan,
        }
    return None


def cpu_per_payment_table(doc: dict[str, Any]) -> list[str]:
    figures = cpu_figures(doc)
    mine = doc.get("cpu_per_payment") or {}
    if figures is None or not mine:
        return []
    cores = mine.get("cpu_s") or {}
    wall = _num(mine.get("wall_s"))
    idle = (mine.get("idle") or {}).get("cores") or {}
    rate = _num(mine.get("offered_rate"))

    def idle_cells(name: str) -> str:
        if not idle:
            return ""
        used = _num(idle.get(name, 0.0))
        return f" {used:.2f} | {used * 1000.0 / rate if rate > 0 else math.nan:.1f} |"

    head = "| component | CPU ms per settled payment | cores used |"
    rule = "|---|---:|---:|"
    if idle:
        head += " cores idle | of which idle, ms per payment |"
        rule += "---:|---:|"
    lines = [head, rule]
    for name, ms in figures["ms"].items():
        if name == cpu.OTHER:
            continue
        used = _num(cores.get(name)) / wall if wall > 0 else math.nan
        lines.append(f"| {name} | {_ms(ms)} | {used:.2f} |{idle_cells(name)}")
    total_cores = _num(mine.get("cores"))
    total = f"| **total** | **{_ms(figures['total_ms'])}** | **{total_cores:.2f}** |"
    if idle:
        floor = _num((mine.get("idle") or {}).get("platform_cores"))
        total += f" **{floor:.2f}** | **{floor * 1000.0 / rate if rate > 0 else math.nan:.1f}** |"
    lines.append(total)
    if cpu.OTHER in figures["ms"]:
        used = _num(cores.get(cpu.OTHER)) / wall if wall > 0 else math.nan
        lines.append(
            f"| other (not the platform; not in the total) | {_ms(figures['ms'][cpu.OTHER])} "
            f"| {used:.2f} |{idle_cells(cpu.OTHER)}"
        )
    return lines


def compare_lines(
    a: dict[str, Any], b: dict[str, Any], *, a_name: str = "A", b_name: str = "B"
) -> list[str]:
    """Two reports' CPU per payment side by side, per component, with the ratio B/A."""
    fa, fb = cpu_figures(a), cpu_figures(b)
    if fa is None or fb is None:
        missing = a_name if fa is None else b_name
        return [f"{missing}: no CPU figures in this report (no cpu or sustained phase)"]
    lines = [
        f"A = {a_name}: commit {fa['commit']}, {fa['source']}, {fa['payments']} payments in "
        f"{fa['wall_s']:.0f} s",
        f"B = {b_name}: commit {fb['commit']}, {fb['source']}, {fb['payments']} payments in "
        f"{fb['wall_s']:.0f} s",
    ]
    if fa["offered_rate"] != fb["offered_rate"]:
        lines.append(
            f"WARNING: offered rates differ ({fa['offered_rate']:g}/s vs "
            f"{fb['offered_rate']:g}/s): CPU per payment falls as the rate rises, so the two "
            "do not compare"
        )
    lines += [
        "",
        "| component | A CPU ms per payment | B CPU ms per payment | B/A |",
        "|---|---:|---:|---:|",
    ]
    names = [n for n in cpu.by_component({**fa["ms"], **fb["ms"]}) if n != cpu.OTHER]

    def row(label: str, x: float, y: float) -> str:
        ratio = f"{y / x:.2f}" if x > 0 and not math.isnan(y) else "-"
        return f"| {label} | {_ms(x)} | {_ms(y)} | {ratio} |"

    for name in names:
        lines.append(row(name, fa["ms"].get(name, 0.0), fb["ms"].get(name, 0.0)))
    lines.append(row("**total**", fa["total_ms"], fb["total_ms"]))
    if cpu.OTHER in fa["ms"] or cpu.OTHER in fb["ms"]:
        lines.append(
            row(
                "other (not the platform; not in the total)",
                fa["ms"].get(cpu.OTHER, 0.0),
                fb["ms"].get(cpu.OTHER, 0.0),
            )
        )
    if not (math.isnan(fa["idle_ms"]) and math.isnan(fb["idle_ms"])):
        lines.append(row("of the total: the idle floor (no load)", fa["idle_ms"], fb["idle_ms"]))
    lines += [
        row("CreatePayment p99 ms", fa["create_p99_ms"], fb["create_p99_ms"]),
        row("accepted->COMPLETED p99 ms", fa["e2e_p99_ms"], fb["e2e_p99_ms"]),
    ]
    for label, f in ((a_name, fa), (b_name, fb)):
        other = f["ms"].get(cpu.OTHER, 0.0)
        if other > 0.1 * f["total_ms"]:
            lines.append(
                f"WARNING: {label}: processes outside the platform used {_ms(other)} CPU ms per "
                "payment meanwhile (a busy machine): its figures may be inflated; run again"
            )
    if fa["total_ms"] > 0:
        ratio = fb["total_ms"] / fa["total_ms"]
        result, by = ratio_verdict(ratio, TARGET_CPU_OVER_BASE, at_least=False)
        lines += [
            "",
            f"B/A total = {ratio:.2f} (issue 15 target: <= {TARGET_CPU_OVER_BASE:.2f}): "
            f"{result}{', ' + by if by else ''}",
        ]
    return lines


def cpu_baseline(doc: dict[str, Any], source: str) -> dict[str, Any]:
    """What a run keeps of its A/B base's report (``--cpu-baseline``)."""
    figures = cpu_figures(doc) or {}
    return {
        "report": source,
        "commit": (doc.get("environment") or {}).get("commit", "?"),
        "started_at": doc.get("started_at"),
        "offered_rate": figures.get("offered_rate"),
        "total_ms_per_payment": figures.get("total_ms"),
        "ms_per_payment": figures.get("ms"),
        "source": figures.get("source"),
    }


def settled_lines(doc: dict[str, Any]) -> list[str]:
    settled = doc.get("settled")
    if not settled:
        return []
    lines = ["Settled-throughput search:", ""]
    for st in settled.get("steps", []):
        verdict = "pass" if st["pass"] else "fail"
        again = " (again)" if st.get("attempt", 1) > 1 else ""
        lines.append(f"- {_num(st['rate']):,.0f}/s{again}: {verdict} ({st['why']})")
    for c in settled.get("confirmations", []):
        lines.append(
            f"- confirmation at {_num(c['rate']):,.0f}/s for "
            f"{_num(settled.get('confirm_duration_s')):.0f} s: "
            f"{'pass' if c['pass'] else 'fail'} ({c['why']})"
        )
    return [*lines, ""]


def alone_lines(doc: dict[str, Any]) -> list[str]:
    alone = doc.get("create_alone")
    if not alone:
        return []
    lines = [
        f"CreatePayment alone: stopped {', '.join(alone.get('pipeline_stopped', []))}; "
        f"{alone.get('still_running', '')}; admission control {alone.get('admission', '?')}.",
        "",
    ]
    for st in alone.get("steps", []):
        lines.append(
            f"- {_num(st['rate']):,.0f}/s: {'pass' if st['pass'] else 'fail'} ({st['why']})"
        )
    if "drained_after_s" in alone:
        left = alone.get("left_after_drain") or {}
        lines.append(
            f"- pipeline started again; drained in {_num(alone['drained_after_s']):.0f} s"
            + (
                f" (still outbox {left.get('outbox_backlog')}, lag {left.get('consumer_lag')})"
                if left and (left.get("outbox_backlog") or _num(left.get("consumer_lag")) > 0)
                else ""
            )
        )
    return [*lines, ""]


def summary_lines(doc: dict[str, Any]) -> list[str]:
    env = doc.get("environment", {})
    lines = [
        f"payrail benchmark, {doc.get('started_at', '?')}, commit {env.get('commit', '?')}",
        f"machine: {env.get('cores')} cores ({env.get('cpu_model')}), "
        f"{env.get('memory_gib')} GiB, PostgreSQL {env.get('postgres', {}).get('server_version')}"
        f" fsync={env.get('postgres', {}).get('fsync')}"
        f" synchronous_commit={env.get('postgres', {}).get('synchronous_commit')}",
        "",
    ]
    echo = doc.get("echo")
    if echo:
        lines.append(
            f"echo baseline: {_num(echo['sustainable_rate']):,.0f}/s with p99 within the limit "
            f"({echo['request_bytes']} B request, {echo['response_bytes']} B response)"
        )
    pg = doc.get("pgbench")
    if pg:
        lines.append(
            f"pgbench baseline (CreatePayment's SQL, {pg['clients']} clients): "
            f"{_num(pg['tps']):,.0f} transactions/s, mean latency {_ms(pg['latency_avg_ms'])} ms"
        )
    if doc.get("step_sustainable_rate") is not None:
        lines.append(
            f"highest sustainable CreatePayment rate (p99 <= {doc['config']['p99_limit_ms']:g} ms):"
            f" {_num(doc['step_sustainable_rate']):,.0f}/s"
        )
    for key, value in doc.get("ratios", {}).items():
        lines.append(f"  {key}: {_num(value):.3f}")
    lines += ["", *phase_table(doc), "", *split_table(doc), ""]
    lines += settled_lines(doc)
    lines += alone_lines(doc)
    sustained_cpu = cpu_table(doc)
    if sustained_cpu:
        lines += ["CPU during the sustained run:", *sustained_cpu, ""]
    per_payment = cpu_per_payment_table(doc)
    if per_payment:
        mine = doc["cpu_per_payment"]
        lines += [
            f"CPU per settled payment at {_num(mine.get('offered_rate')):g}/s offered "
            f"(measured window {_num(mine.get('wall_s')):.0f} s, {mine.get('payments')} "
            f"payments COMPLETED in it):",
            *per_payment,
            "",
        ]
    if doc.get("e2e_failed"):
        lines.append(f"payments that ended otherwise than COMPLETED: {doc['e2e_failed']}")
    if doc.get("targets"):
        lines += ["targets:", "| target | measured | result | |", "|---|---|---|---|"]
        for t in doc["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {t['result']} | {t['by']} |")
    issue = issue_targets_table(doc)
    if issue:
        lines += ["", "issue 15 targets (ratios to this run's echo baseline):", *issue]
    return lines


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------- chart


def write_chart(doc: dict[str, Any], path: Path) -> None:
    """Latency (p50, p99) and throughput per second over the whole run, phases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_rate, ax_backlog) = plt.subplots(
        3, 1, figsize=(12, 9), sharex=True, height_ratios=(3, 2, 1.3)
    )
    for p in doc.get("phases", []):
        rows = doc.get("series", {}).get(p["name"], [])
        if not rows:
            continue
        t0 = _num(p.get("start_s"))
        xs = [t0 + r["t_s"] for r in rows]
        p50 = [_num(r["p50_ms"]) for r in rows]
        p99 = [_num(r["p99_ms"]) for r in rows]
        ax_lat.plot(xs, p50, color="tab:blue", linewidth=1)
        ax_lat.plot(xs, p99, color="tab:red", linewidth=1)
        ax_rate.plot(xs, [r["ok"] for r in rows], color="tab:green", linewidth=1)
        ax_rate.plot(xs, [r["errors"] for r in rows], color="tab:orange", linewidth=1)
        for ax in (ax_lat, ax_rate, ax_backlog):
            ax.axvline(t0, color="grey", linewidth=0.5, alpha=0.5)
        ax_lat.annotate(
            p["name"],
            (t0, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="grey",
        )
    backlog = doc.get("backlog", [])
    if backlog:
        ax_backlog.plot(
            [b["t_s"] for b in backlog], [b["rows"] for b in backlog], color="tab:purple"
        )
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("CreatePayment latency, ms (log)")
    ax_lat.plot([], [], color="tab:blue", label="p50 per second")
    ax_lat.plot([], [], color="tab:red", label="p99 per second")
    limit = _num(doc.get("config", {}).get("p99_limit_ms"))
    if not math.isnan(limit):
        ax_lat.axhline(limit, color="red", linestyle="--", linewidth=0.8, label="p99 limit")
    ax_lat.legend(loc="upper left", fontsize=8)
    ax_rate.set_yscale("symlog", linthresh=10)
    ax_rate.set_ylabel("answers per second (symlog)")
    ax_rate.plot([], [], color="tab:green", label="OK")
    ax_rate.plot([], [], color="tab:orange", label="errors (shed)")
    ax_rate.legend(loc="upper left", fontsize=8)
    lag = doc.get("consumer_lag", [])
    if lag:
        ax_lag = ax_backlog.twinx()
        ax_lag.plot(
            [x["t_s"] for x in lag],
            [x["messages"] for x in lag],
            color="tab:brown",
            linestyle=":",
            label="consumer lag (messages)",
        )
        ax_lag.set_ylabel("consumer lag", color="tab:brown", fontsize=8)
    ax_backlog.set_ylabel("outbox backlog, rows")
    ax_backlog.set_xlabel("seconds since the start of the run (latency by scheduled send time)")
    env = doc.get("environment", {})
    fig.suptitle(
        f"payrail bench {doc.get('started_at', '')} commit {env.get('commit', '')}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- docs


def figures_markdown(doc: dict[str, Any], *, json_name: str, png_name: str) -> str:
    env = doc.get("environment", {})
    cfg = doc.get("config", {})
    lines = [
        f"Run of **{doc.get('started_at', '?')}** at commit `{env.get('commit', '?')}`, "
        f"{env.get('cores')} cores ({env.get('cpu_model')}), {env.get('memory_gib')} GiB; "
        f"PostgreSQL {env.get('postgres', {}).get('server_version')} with "
        f"fsync={env.get('postgres', {}).get('fsync')}, "
        f"synchronous_commit={env.get('postgres', {}).get('synchronous_commit')}. "
        f"{cfg.get('users')} users, {cfg.get('channels')} client connections, "
        f"p99 limit {cfg.get('p99_limit_ms')} ms. Raw report: `{json_name}`; "
        f"chart: `{png_name}`.",
        "",
    ]
    issue = issue_targets_table(doc, bold=True)
    if issue:
        lines += ["### Targets (issue 15: ratios to this run's echo baseline)", "", *issue, ""]
        per_payment = cpu_per_payment_table(doc)
        if per_payment:
            mine = doc["cpu_per_payment"]
            lines += [
                f"CPU per settled payment at {_num(mine.get('offered_rate')):g}/s offered "
                f"(measured window {_num(mine.get('wall_s')):.0f} s, {mine.get('payments')} "
                "payments COMPLETED in it):",
                "",
                *per_payment,
                "",
            ]
        if doc.get("targets"):
            lines += ["### Targets of earlier issues", ""]
    else:
        lines += ["### Targets", ""]
    if doc.get("targets") or not issue:
        lines += ["| target | measured | result | |", "|---|---|---|---|"]
        for t in doc.get("targets", []):
            lines.append(f"| {t['target']} | {t['measured']} | **{t['result']}** | {t['by']} |")
        lines.append("")
    lines += ["### Baselines and ratios", ""]
    echo = doc.get("echo")
    if echo:
        lines.append(
            f"- Echo server (bare grpc.aio, {echo['request_bytes']} B in, "
            f"{echo['response_bytes']} B out, same generator): "
            f"**{_num(echo['sustainable_rate']):,.0f}/s** with p99 within the limit."
        )
    pg = doc.get("pgbench")
    if pg:
        lines.append(
            f"- pgbench, CreatePayment's transaction ({pg['clients']} clients, "
            f"{pg['duration_s']} s, {pg['payload_bytes']} B outbox payload): "
            f"**{_num(pg['tps']):,.0f} transactions/s**, mean latency {_ms(pg['latency_avg_ms'])}"
            " ms."
        )
    if doc.get("step_sustainable_rate") is not None:
        lines.append(
            f"- payrail CreatePayment, highest rate with p99 within the limit (step search): "
            f"**{_num(doc['step_sustainable_rate']):,.0f}/s**."
        )
    for key, value in doc.get("ratios", {}).items():
        lines.append(f"- `{key}` = {_num(value):.3f}")
    lines += ["", "### Phases", "", *phase_table(doc), ""]
    split = split_table(doc)
    if split:
        lines += ["End-to-end latency in two halves:", "", *split, ""]
    lines += settled_lines(doc)
    lines += alone_lines(doc)
    steps = doc.get("step") or []
    if steps:
        lines += ["Step search:", ""]
        for s in steps:
            lines.append(f"- {s['rate']:,.0f}/s: {'pass' if s['pass'] else 'fail'} ({s['why']})")
        lines.append("")
    overload = doc.get("overload")
    if overload:
        lines += [
            "Overload: "
            f"{_num(overload['rate']):,.0f}/s offered, {_num(overload['achieved_rate']):,.0f}/s"
            f" answered OK (p99 {_ms(overload['ok_latency']['p99_ms'])} ms); shed "
            f"{overload['shed'] or 'nothing'} with p50 {_ms(overload['shed_latency']['p50_ms'])}"
            f" ms / p99 {_ms(overload['shed_latency']['p99_ms'])} ms; then "
            f"{_num(overload['recovery_rate']):,.0f}/s: p99 over its second half "
            f"{_ms(overload['recovery_second_half_p99_ms'])} ms "
            f"({'recovered' if overload['recovered'] else 'not recovered'}).",
            "",
        ]
    cpu = cpu_table(doc)
    if cpu:
        lines += ["### Where the CPU goes (sustained run)", "", *cpu, ""]
    return "\n".join(lines)


def update_docs(doc: dict[str, Any], docs_path: Path, *, json_name: str, png_name: str) -> None:
    """Replace the figures section of docs/performance.md with this run's figures."""
    text = docs_path.read_text()
    begin = text.find(DOCS_BEGIN)
    end = text.find(DOCS_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{docs_path} has no {DOCS_BEGIN!r} ... {DOCS_END!r} section")
    body = figures_markdown(doc, json_name=json_name, png_name=png_name)
    png = Path(png_name)
    if png.exists():
        # Linked relative to the page, so it renders wherever the repository is viewed.
        link = os.path.relpath(png.resolve(), docs_path.resolve().parent)
        body += f"\n![CreatePayment latency, throughput and backlog over the run]({link})\n"
    docs_path.write_text(text[: begin + len(DOCS_BEGIN)] + "\n" + body + "\n" + text[end:])
