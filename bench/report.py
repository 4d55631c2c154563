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

from bench.runner import BenchRun, config_dict
from bench.stats import json_safe

DOCS_BEGIN = "<!-- bench:figures:begin (rendered by `python -m bench docs`; do not edit) -->"
DOCS_END = "<!-- bench:figures:end -->"

# The targets.
TARGET_CREATE_RATE = 1000.0
TARGET_CREATE_P99_MS = 50.0
TARGET_ECHO_RATIO = 0.30
TARGET_E2E_RATE = 500.0
TARGET_E2E_P50_MS = 100.0
TARGET_E2E_P99_MS = 500.0


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
    return out


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
    cpu = cpu_table(doc)
    if cpu:
        lines += ["CPU during the sustained run:", *cpu, ""]
    if doc.get("e2e_failed"):
        lines.append(f"payments that ended otherwise than COMPLETED: {doc['e2e_failed']}")
    lines += ["targets:", "| target | measured | result | |", "|---|---|---|---|"]
    for t in doc.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | {t['result']} | {t['by']} |")
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
        "### Targets",
        "",
        "| target | measured | result | |",
        "|---|---|---|---|",
    ]
    for t in doc.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | **{t['result']}** | {t['by']} |")
    lines += ["", "### Baselines and ratios", ""]
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
