"""Latency samples and their summaries: percentiles, per-second series, error counts.

Every sample keeps the time its request was *scheduled* (seconds since the phase began)
and its latency from that moment; summaries are computed from all samples, not from a
histogram, so p99.9 of a few thousand requests is exact rather than a bucket edge.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    # The epsilon keeps float noise (0.999 * 1000 = 999.0000000000001) off the next rank.
    rank = math.ceil(pct / 100.0 * len(sorted_values) - 1e-9)
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def summarize_ms(latencies_s: Iterable[float]) -> dict[str, float]:
    """count, mean, p50/p90/p99/p99.9 and max, in milliseconds."""
    values = sorted(latencies_s)
    out: dict[str, float] = {"count": float(len(values))}
    out["mean_ms"] = (sum(values) / len(values) * 1000.0) if values else math.nan
    for pct in PERCENTILES:
        out[f"p{pct:g}_ms"] = percentile(values, pct) * 1000.0
    out["max_ms"] = values[-1] * 1000.0 if values else math.nan
    return out


@dataclass
class Sample:
    """One request: when it was scheduled (s since phase start), its latency, its code."""

    scheduled_s: float
    latency_s: float
    code: str


@dataclass
class PhaseRecorder:
    """Collects the samples of one open-loop phase."""

    name: str
    offered_rate: float
    warmup_s: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)

    def add(self, scheduled_s: float, latency_s: float, code: str) -> None:
        self.samples.append(Sample(scheduled_s, latency_s, code))

    def measured(self) -> list[Sample]:
        """Samples scheduled after the warm-up."""
        return [s for s in self.samples if s.scheduled_s >= self.warmup_s]

    def summary(self) -> dict[str, Any]:
        measured = self.measured()
        ok = [s.latency_s for s in measured if s.code == "OK"]
        errors = [s for s in measured if s.code != "OK"]
        codes = Counter(s.code for s in measured)
        return {
            "name": self.name,
            "offered_rate": self.offered_rate,
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "requests": len(measured),
            "ok": len(ok),
            # Throughput: successful answers per second of the measured window.
            "achieved_rate": len(ok) / self.duration_s if self.duration_s > 0 else 0.0,
            "latency": summarize_ms(ok),
            "error_latency": summarize_ms(s.latency_s for s in errors),
            "codes": dict(sorted(codes.items())),
            "error_ratio": (len(errors) / len(measured)) if measured else 0.0,
        }

    def series(self, bucket_s: float = 1.0) -> list[dict[str, float]]:
        """Per-bucket (by scheduled time) throughput, errors and latency percentiles."""
        return bucket_series(self.samples, bucket_s)


def bucket_series(samples: Sequence[Sample], bucket_s: float) -> list[dict[str, float]]:
    buckets: dict[int, list[Sample]] = {}
    for sample in samples:
        buckets.setdefault(int(sample.scheduled_s // bucket_s), []).append(sample)
    rows = []
    for index in sorted(buckets):
        bucket = buckets[index]
        ok = sorted(s.latency_s for s in bucket if s.code == "OK")
        rows.append(
            {
                "t_s": index * bucket_s,
                "sent": float(len(bucket)),
                "ok": float(len(ok)),
                "errors": float(len(bucket) - len(ok)),
                "p50_ms": percentile(ok, 50.0) * 1000.0,
                "p99_ms": percentile(ok, 99.0) * 1000.0,
            }
        )
    return rows


def linear_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: empty summaries become null."""
    return None if math.isnan(value) or math.isinf(value) else value


def json_safe(value: Any) -> Any:
    """The same structure with NaN/inf floats replaced by None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
