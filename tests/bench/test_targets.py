"""Issue 15's figures without a stack: how a step is judged, the ratio arithmetic, the
CPU table per component, ``bench compare`` and the docs section."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pytest

from bench import ab, cli, cpu, report
from bench.judge import next_rate, settled_passes, step_passes


def summary(**over: Any) -> dict[str, Any]:
    """A settled-throughput step that passes; ``over`` spoils it."""
    base: dict[str, Any] = {
        "offered_rate": 40.0,
        "achieved_rate": 40.0,
        "codes": {"OK": 400},
        "error_ratio": 0.0,
        "latency": {"p99_ms": 30.0},
        "e2e_measured": {"p99_ms": 600.0},
        "e2e_accepted": 480,
        "e2e_completed": 480,
        "e2e_failed": 0,
        "e2e_outstanding": 0,
    }
    base.update(over)
    return base


def test_a_settled_step_passes_when_everything_completed_within_both_bounds() -> None:
    ok, why = settled_passes(summary())
    assert ok
    assert "480 of 480 COMPLETED" in why


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"codes": {"OK": 390, "RESOURCE_EXHAUSTED": 10}}, "10 shed"),
        ({"codes": {"OK": 399, "DEADLINE_EXCEEDED": 1}}, "DEADLINE_EXCEEDED 1"),
        ({"e2e_outstanding": 3, "e2e_completed": 477}, "3 of 480 accepted not final"),
        ({"e2e_failed": 2, "e2e_completed": 478}, "2 of 480 accepted ended otherwise"),
        ({"e2e_completed": 470}, "only 470 of 480"),
        ({"latency": {"p99_ms": 50.1}}, "CreatePayment p99 50.1 ms > 50 ms"),
        ({"e2e_measured": {"p99_ms": 1001.0}}, "accepted->COMPLETED p99 1001 ms > 1000 ms"),
        ({"e2e_measured": {"p99_ms": math.nan}}, "no payment seen COMPLETED"),
        ({"achieved_rate": 30.0}, "achieved 30/s < 95% of offered"),
    ],
)
def test_a_settled_step_fails_for_each_broken_rule(over: dict[str, Any], reason: str) -> None:
    ok, why = settled_passes(summary(**over))
    assert not ok
    assert reason in why


def test_a_settled_step_names_every_reason_and_takes_other_bounds() -> None:
    ok, why = settled_passes(
        summary(latency={"p99_ms": 80.0}, e2e_measured={"p99_ms": 1500.0}),
        create_p99_ms=100.0,
        e2e_p99_ms=1000.0,
    )
    assert not ok
    assert "CreatePayment" not in why  # 80 ms is within the 100 ms given
    assert "1500 ms > 1000 ms" in why


def test_a_createpayment_step_allows_a_few_errors() -> None:
    assert step_passes(summary(error_ratio=0.0005), 50.0)[0]
    assert not step_passes(summary(error_ratio=0.002), 50.0)[0]
    assert not step_passes(summary(latency={"p99_ms": 51.0}), 50.0)[0]


def test_the_next_step_always_rises() -> None:
    assert next_rate(2, 1.25) == 3  # round(2.5) would stay at 2 for ever
    assert next_rate(20, 1.25) == 25
    assert next_rate(200, 1.25) == 250


def test_ratio_verdicts_say_by_how_much() -> None:
    assert report.ratio_verdict(0.020, 0.15, at_least=True) == (
        "miss",
        "0.13x the target; needs 7.5x more",
    )
    assert report.ratio_verdict(0.30, 0.15, at_least=True) == ("pass", "2.00x the target")
    assert report.ratio_verdict(0.0, 0.15, at_least=True) == ("miss", "nothing passed")
    assert report.ratio_verdict(0.5, 0.2, at_least=False) == (
        "miss",
        "2.50x the bound; needs 2.5x less",
    )
    assert report.ratio_verdict(0.1, 0.2, at_least=False) == ("pass", "2.00x under the bound")
    assert report.ratio_verdict(math.nan, 0.2, at_least=False) == ("n/a", "")


def test_cpu_per_component_groups_the_stack_and_keeps_other_out_of_the_total() -> None:
    used = {
        "payment_svc": 1.0,
        "sandbox_json": 0.2,
        "sandbox_soap": 0.1,
        "consumer_insights": 0.3,
        "postgres": 0.5,
        "bench": 0.4,
        "kafka-2": 0.1,
        "kafka": 0.2,
        "other": 2.0,
    }
    figures = cpu.per_payment(used, payments=100, wall_s=10.0)
    ms = figures["ms_per_payment"]
    assert list(ms) == [
        "payment_svc",
        "insights",
        "sandboxes",
        "postgres",
        "kafka",
        "load generator",
        "other",
    ]
    assert ms["sandboxes"] == pytest.approx(3.0)
    assert ms["kafka"] == pytest.approx(3.0)
    assert figures["total_ms_per_payment"] == pytest.approx(28.0)  # 2.8 s / 100, no other
    assert figures["other_ms_per_payment"] == pytest.approx(20.0)
    assert figures["cores"] == pytest.approx(0.28)
    assert math.isnan(cpu.per_payment(used, payments=0, wall_s=1.0)["total_ms_per_payment"])


def test_supervisord_programs_are_found_by_their_module() -> None:
    conf = (
        "[supervisord]\npidfile=/x\n\n[program:gateway_svc]\n"
        "command=/v/bin/python -m gateway_svc\ndirectory=/r\n\n"
        "[program:consumer_insights]\ncommand=/v/bin/python -m consumer_svc.insights\n"
    )
    assert cpu.supervisord_programs(conf) == {
        "gateway_svc": "gateway_svc",
        "consumer_svc.insights": "consumer_insights",
    }


def cpu_report(commit: str, rate: float, ms: dict[str, float]) -> dict[str, Any]:
    total = sum(v for k, v in ms.items() if k != "other")
    return {
        "environment": {"commit": commit},
        "started_at": "2026-11-29T12:00:00+0000",
        "config": {"p99_limit_ms": 50.0},
        "cpu_per_payment": {
            "offered_rate": rate,
            "payments": 1200,
            "wall_s": 60.0,
            "ms_per_payment": ms,
            "cpu_s": {k: v * 1.2 for k, v in ms.items()},
            "total_ms_per_payment": total,
            "cores": total * 20 / 1000,
            "create_p99_ms": 30.0,
            "e2e_p99_ms": 700.0,
            "outstanding": 0,
            "failed": 0,
        },
    }


def test_compare_prints_each_component_side_by_side_with_the_ratio() -> None:
    a = cpu_report("d99f874", 30, {"payment_svc": 14.0, "kafka": 8.0, "other": 1.0})
    b = cpu_report("abc1234", 30, {"payment_svc": 3.5, "kafka": 2.0, "redis": 0.5})
    text = "\n".join(report.compare_lines(a, b, a_name="base", b_name="head"))
    assert "| payment_svc | 14.0 | 3.5 | 0.25 |" in text
    assert "| kafka | 8.0 | 2.0 | 0.25 |" in text
    assert "| redis | 0.0 | 0.5 | - |" in text
    assert "| **total** | 22.0 | 6.0 | 0.27 |" in text
    assert "| other (not the platform; not in the total) | 1.0 | 0.0 | 0.00 |" in text
    assert "B/A total = 0.27 (issue 15 target: <= 0.20): miss" in text
    assert "WARNING" not in text
    c = cpu_report("abc1234", 40, {"payment_svc": 3.0})
    assert "WARNING: offered rates differ" in "\n".join(report.compare_lines(a, c))


def test_compare_reads_older_reports_from_their_sustained_phase() -> None:
    old = {
        "environment": {"commit": "3430add"},
        "phases": [
            {
                "name": "sustained",
                "offered_rate": 70.0,
                "ok": 4200,
                "duration_s": 60.0,
                "latency": {"p99_ms": 36.0},
                "e2e": {"p99_ms": 1171.0},
                "cpu": {
                    "payment_svc": {"cores": 0.5, "cpu_ms_per_payment": 7.0},
                    "sandbox_json": {"cores": 0.06, "cpu_ms_per_payment": 0.9},
                    "other": {"cores": 0.04, "cpu_ms_per_payment": 0.6},
                },
            }
        ],
    }
    figures = report.cpu_figures(old)
    assert figures is not None
    assert figures["ms"]["sandboxes"] == pytest.approx(0.9)
    assert figures["total_ms"] == pytest.approx(7.9)
    assert "sustained phase" in figures["source"]


def full_doc(*, confirm_s: float = 300.0, baseline: bool = True) -> dict[str, Any]:
    doc = cpu_report("abc1234", 30, {"payment_svc": 3.0, "postgres": 2.0, "other": 0.5})
    doc["echo"] = {"sustainable_rate": 2000.0, "request_bytes": 98, "response_bytes": 126}
    doc["settled"] = {
        "step_rate": 320.0,
        "confirmed": True,
        "rate": 300.0,
        "confirm_duration_s": confirm_s,
        "create_p99_ms": 31.0,
        "e2e_p99_ms": 640.0,
        "accepted": 90_000,
        "completed": 90_000,
        "steps": [{"rate": 320.0, "pass": True, "why": "fine"}],
        "confirmations": [{"rate": 320.0, "pass": True, "why": "fine"}],
    }
    doc["create_alone"] = {
        "rate": 600.0,
        "pipeline_stopped": ["consumer_svc"],
        "steps": [
            {"rate": 600.0, "pass": True, "why": "", "summary": {"latency": {"p99_ms": 40.0}}},
            {"rate": 750.0, "pass": False, "why": "", "summary": {"latency": {"p99_ms": 90.0}}},
        ],
    }
    if baseline:
        doc["cpu_baseline"] = {
            "commit": "d99f874",
            "offered_rate": 30.0,
            "total_ms_per_payment": 50.0,
        }
    doc["phases"] = []
    doc["ratios"] = report.ratios(doc)
    doc["targets"] = report.targets(doc)
    doc["issue_targets"] = report.issue_targets(doc)
    return doc


def test_the_three_figures_as_ratios_with_their_verdicts() -> None:
    doc = full_doc()
    assert doc["ratios"]["settled_rate_over_echo"] == pytest.approx(0.15)
    assert doc["ratios"]["alone_rate_over_echo"] == pytest.approx(0.30)
    assert doc["ratios"]["cpu_per_payment_over_base"] == pytest.approx(0.10)
    rows = {row["figure"]: row for row in doc["issue_targets"]}
    settled = rows["settled throughput"]
    assert (settled["ratio"], settled["result"]) == ("0.150x echo", "pass")
    assert "CreatePayment p99 31.0 ms, accepted->COMPLETED p99 640.0 ms" in settled["measured"]
    assert "90000 of 90000 accepted COMPLETED" in settled["measured"]
    cpu_row = rows["CPU per settled payment"]
    assert (cpu_row["ratio"], cpu_row["result"]) == ("0.10x base", "pass")
    assert "d99f874" in cpu_row["target"]
    alone = rows["CreatePayment alone (pipeline stopped)"]
    assert (alone["ratio"], alone["result"]) == ("0.300x echo", "miss")
    assert alone["measured"] == "600/s with p99 40.0 ms"
    assert alone["by"] == "0.86x the target; needs 1.2x more"


def test_a_short_confirmation_or_a_missing_base_is_said() -> None:
    doc = full_doc(confirm_s=60.0, baseline=False)
    rows = {row["figure"]: row for row in doc["issue_targets"]}
    assert rows["settled throughput"]["result"] == "pass (short run)"
    assert "shorter than the target's 5 minutes" in rows["settled throughput"]["by"]
    assert rows["CPU per settled payment"]["result"] == "n/a"
    assert "python -m bench ab" in rows["CPU per settled payment"]["by"]


def test_an_unconfirmed_settled_rate_is_a_miss_with_the_reason() -> None:
    doc = full_doc()
    doc["settled"].update(
        confirmed=False,
        rate=0.0,
        confirmations=[
            {"rate": 320.0, "pass": False, "why": "3 shed, errors RESOURCE_EXHAUSTED 3"}
        ],
    )
    row = report.issue_targets(doc)[0]
    assert row["result"] == "miss"
    assert "no rate confirmed (search: 320/s; confirmation 320/s: 3 shed" in row["measured"]


def test_the_docs_section_carries_the_ratios_date_commit_and_cpu_table(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# perf\n{report.DOCS_BEGIN}\nold figures\n{report.DOCS_END}\ntail\n")
    report.update_docs(full_doc(), page, json_name="r.json", png_name=str(tmp_path / "none.png"))
    text = page.read_text()
    assert "old figures" not in text
    assert text.endswith(f"{report.DOCS_END}\ntail\n")
    assert "Run of **2026-11-29T12:00:00+0000** at commit `abc1234`" in text
    assert "### Targets (issue 15: ratios to this run's echo baseline)" in text
    assert "| settled throughput |" in text
    assert "| 0.150x echo | >= 0.15x echo (echo 2,000/s) | **pass** |" in text
    assert "| payment_svc | 3.0 |" in text
    assert "| **total** | **5.0** |" in text
    assert "CPU per settled payment at 30/s offered" in text
    assert "### Targets of earlier issues" not in text  # none in this report


def test_only_switches_every_other_phase_off() -> None:
    args = cli._parser().parse_args(["run", "--only", "cpu,settled"])
    config = cli._config(args)
    assert (config.cpu_rate, config.settled) == (30.0, True)
    assert not any((config.echo, config.pgbench, config.step, config.sustained, config.overload))
    assert (config.e2e_rate, config.create_alone) == (0.0, False)
    with pytest.raises(SystemExit, match="no phase"):
        cli._config(cli._parser().parse_args(["run", "--only", "cpu,nope"]))


def test_the_ab_worktree_uses_this_venv_without_reinstalling_it(tmp_path: Path) -> None:
    tree = tmp_path / "base-d99f874"
    command = ab.make_command(tree, "up")
    venv = ab.ROOT / ".venv"
    assert command[:5] == ["make", "--no-print-directory", "-C", str(tree), "-o"]
    assert command[5] == str(venv / ".installed")
    assert f"VENV={venv}" in command
    assert command[-1] == "up"
    env = ab.tree_env(tree)
    assert env["PYTHONPATH"] == f"{tree}:{tree / 'generated'}"
    assert "PAYRAIL_DATA_DIR" not in env
    assert env["PAYRAIL_RISK_VELOCITY_MAX_PER_CARD"] == "100000000"
    args = argparse.Namespace(
        rate=30.0, duration_s=60.0, warmup_s=5.0, users=50, bench_args="--channels 4"
    )
    bench = ab.bench_command(args, tree, tmp_path / "out", "d99f87415523da64")
    assert bench[bench.index("--only") + 1] == "cpu"
    assert bench[bench.index("--run-dir") + 1] == str(tree / ".data/run")
    assert bench[bench.index("--commit") + 1] == "d99f874155"
    assert bench[-2:] == ["--channels", "4"]


def test_the_idle_floor_is_shown_per_component_and_in_compare() -> None:
    doc = cpu_report("abc1234", 20, {"payment_svc": 10.0, "kafka": 20.0, "other": 1.0})
    doc["cpu_per_payment"]["idle"] = {
        "wall_s": 10.0,
        "cores": {"payment_svc": 0.02, "kafka": 0.3, "other": 0.01},
        "platform_cores": 0.32,
    }
    table = "\n".join(report.cpu_per_payment_table(doc))
    assert "cores idle | of which idle, ms per payment |" in table
    assert "| kafka | 20.0 | 0.40 | 0.30 | 15.0 |" in table  # 0.3 cores spread over 20/s
    assert "| **total** | **30.0** | **0.60** | **0.32** | **16.0** |" in table
    old = cpu_report("d99f874", 20, {"payment_svc": 20.0, "kafka": 30.0})
    text = "\n".join(report.compare_lines(old, doc))
    assert "| of the total: the idle floor (no load) | - | 16.0 | - |" in text


def test_the_search_repeats_a_failed_step_and_bisects_once() -> None:
    """Capacity 33/s; the first run of 25/s is spoilt by a noisy second."""
    import asyncio

    from bench.runner import Bench, BenchConfig

    bench = Bench(BenchConfig(progress=False, step_factor=1.25))
    runs: list[str] = []

    async def phase(name: str, rate: float, *args: Any, **kwargs: Any) -> dict[str, Any]:
        runs.append(name)
        return {"rate": rate, "noisy": name == "s@25"}

    def judge(summary: dict[str, Any]) -> tuple[bool, str]:
        ok = summary["rate"] <= 33 and not summary["noisy"]
        return ok, "ok" if ok else "too fast"

    async def send(index: int) -> str:
        return "OK"

    bench._phase = phase  # type: ignore[method-assign]
    best, steps = asyncio.run(
        bench._search("s", send, 20, with_tracker=True, judge=judge, retries=1)
    )
    assert runs == ["s@20", "s@25", "s@25#2", "s@31", "s@39", "s@39#2", "s@35", "s@35#2"]
    assert best == 31
    assert [s["attempt"] for s in steps if s["rate"] == 25] == [1, 2]
    best, _ = asyncio.run(bench._search("t", send, 20, with_tracker=True, judge=judge))
    assert best == 31  # 39 fails, 35 (bisection) fails
