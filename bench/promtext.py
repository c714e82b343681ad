"""Reading the daemon's /metrics page: the Prometheus text format and histogram quantiles.

Only what the harness needs: samples by name and labels, and quantiles
interpolated from cumulative histogram buckets the way PromQL's
``histogram_quantile`` does it (linearly inside the bucket that holds the rank).

    samples = parse(text)
    samples.value("cdc_acked_position", pipeline="bench")         # float or None
    buckets = samples.buckets("cdc_commit_to_ack_seconds", pipeline="bench")
    histogram_quantile(0.99, buckets)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = frozenset[tuple[str, str]]
Bucket = tuple[float, float]  # (upper bound "le", cumulative count)


def _unescape(value: str) -> str:
    return value.replace(r"\"", '"').replace(r"\n", "\n").replace("\\\\", "\\")


@dataclass
class Samples:
    """Every sample of one scrape: {name: {labels: value}}."""

    by_name: dict[str, dict[Labels, float]]

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """The samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return [
            (dict(lbls), value)
            for lbls, value in self.by_name.get(name, {}).items()
            if want <= lbls
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the matching samples of `name`, or None when there is none."""
        found = self.series(name, **labels)
        return sum(v for _, v in found) if found else None

    def buckets(self, name: str, **labels: str) -> list[Bucket]:
        """The cumulative buckets of histogram `name` (summed over other labels), by bound."""
        sums: dict[float, float] = {}
        for lbls, value in self.series(f"{name}_bucket", **labels):
            bound = float(lbls["le"])
            sums[bound] = sums.get(bound, 0.0) + value
        return sorted(sums.items())


def parse(text: str) -> Samples:
    """Parse the Prometheus text exposition format (comments and timestamps ignored)."""
    by_name: dict[str, dict[Labels, float]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        if brace >= 0:
            close = line.rindex("}")
            name = line[:brace]
            labels = frozenset(
                (k, _unescape(v)) for k, v in _LABEL.findall(line[brace + 1 : close])
            )
            rest = line[close + 1 :].split()
        else:
            name, *rest = line.split()
            labels = frozenset()
        if not rest:
            continue
        by_name.setdefault(name, {})[labels] = float(rest[0])
    return Samples(by_name)


def bucket_delta(after: Sequence[Bucket], before: Sequence[Bucket]) -> list[Bucket]:
    """The buckets of the observations made between two scrapes of the same histogram."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def histogram_count(buckets: Sequence[Bucket]) -> float:
    """Number of observations (the +Inf bucket's count)."""
    return buckets[-1][1] if buckets else 0.0


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile (0..1) interpolated linearly inside the bucket holding its rank.

    As PromQL does: the lowest bucket starts at 0 (or at its bound, if that is
    negative); a rank in the +Inf bucket gives the highest finite bound. None
    when there are no observations.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for index, (bound, count) in enumerate(ordered):
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                finite = [b for b, _ in ordered if not math.isinf(b)]
                return finite[-1] if finite else None
            if index == 0 and bound <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


def histogram_max_bound(buckets: Sequence[Bucket]) -> float | None:
    """The upper bound of the highest bucket that gained observations: the max is at most this.

    (math.inf when the largest observation fell past every finite bound.)
    """
    previous = 0.0
    highest: float | None = None
    for bound, count in sorted(buckets):
        if count > previous:
            highest = bound
        previous = count
    return highest


def exact_quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-quantile of already sorted values (nearest rank: an observed value)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def summarize(
    values: Iterable[float], quantiles: Sequence[float] = (0.5, 0.95, 0.99)
) -> dict[str, float | None]:
    """{"n", "p50", "p95", "p99", "max"} of the values (None entries when empty)."""
    ordered = sorted(values)
    out: dict[str, float | None] = {"n": float(len(ordered))}
    for q in quantiles:
        out[f"p{round(q * 100):d}"] = exact_quantile(ordered, q)
    out["max"] = ordered[-1] if ordered else None
    return out
