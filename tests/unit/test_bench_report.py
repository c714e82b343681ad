"""The benchmark harness's pure parts: /metrics parsing, histogram quantiles, the report."""

from __future__ import annotations

import json
import math

import pytest

from bench.promtext import (
    bucket_delta,
    histogram_count,
    histogram_max_bound,
    histogram_quantile,
    parse,
    summarize,
)
from bench.report import Figure, Target, format_value, render_markdown, render_table, write_report

METRICS = """\
# HELP cdc_acked_position Last source position whose events are all acknowledged
# TYPE cdc_acked_position gauge
cdc_acked_position{pipeline="a"} 3.2198664e+07
cdc_acked_position{pipeline="b"} 12.0
cdc_transactions_acked_total{pipeline="a"} 10000.0
process_resident_memory_bytes 5.0e+07
cdc_commit_to_ack_seconds_bucket{le="0.005",pipeline="a"} 10.0
cdc_commit_to_ack_seconds_bucket{le="0.01",pipeline="a"} 60.0
cdc_commit_to_ack_seconds_bucket{le="0.05",pipeline="a"} 100.0
cdc_commit_to_ack_seconds_bucket{le="+Inf",pipeline="a"} 100.0
cdc_commit_to_ack_seconds_count{pipeline="a"} 100.0
cdc_errors_total{kind="a \\"quoted\\" kind",pipeline="a"} 1.0
"""


def test_parse_values_by_label():
    samples = parse(METRICS)
    assert samples.value("cdc_acked_position", pipeline="a") == 32198664
    assert samples.value("cdc_acked_position", pipeline="b") == 12
    assert samples.value("cdc_acked_position", pipeline="zzz") is None
    assert samples.value("process_resident_memory_bytes") == 5e7
    assert samples.value("cdc_errors_total", kind='a "quoted" kind') == 1


def test_buckets_sorted_by_bound():
    buckets = parse(METRICS).buckets("cdc_commit_to_ack_seconds", pipeline="a")
    assert buckets == [(0.005, 10), (0.01, 60), (0.05, 100), (math.inf, 100)]
    assert histogram_count(buckets) == 100


def test_quantile_interpolates_inside_the_bucket():
    buckets = [(0.005, 10.0), (0.01, 60.0), (0.05, 100.0), (math.inf, 100.0)]
    # rank 50 lies 40/50 of the way through (0.005, 0.01]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.005 + 0.005 * 40 / 50)
    # rank 5 lies halfway through the first bucket, which starts at 0
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.0025)
    # rank 99 lies 39/40 of the way through (0.01, 0.05]
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.01 + 0.04 * 39 / 40)
    assert histogram_max_bound(buckets) == 0.05


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    buckets = [(0.1, 1.0), (1.0, 2.0), (math.inf, 10.0)]
    assert histogram_quantile(0.99, buckets) == 1.0
    assert histogram_max_bound(buckets) == math.inf


def test_quantile_of_nothing():
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_max_bound([(0.1, 0.0), (math.inf, 0.0)]) is None


def test_bucket_delta_is_the_window_between_two_scrapes():
    before = [(0.01, 5.0), (0.1, 8.0), (math.inf, 9.0)]
    after = [(0.01, 15.0), (0.1, 28.0), (math.inf, 29.0)]
    window = bucket_delta(after, before)
    assert window == [(0.01, 10.0), (0.1, 20.0), (math.inf, 20.0)]
    assert histogram_quantile(0.5, window) == pytest.approx(0.01)


def test_summarize_exact_percentiles():
    summary = summarize(float(v) for v in range(1, 101))
    assert summary == {"n": 100, "p50": 50, "p95": 95, "p99": 99, "max": 100}
    assert summarize([])["p50"] is None


def test_figure_ratio_and_targets():
    fig = Figure("pg_small", "rows/s", 81_000, "rows/s", baseline=90_000,
                 baseline_name="pg_recvlogical", target=Target("ratio_min", 0.9))
    assert fig.ratio == pytest.approx(0.9)
    assert fig.met is True
    assert Figure("x", "p99", 60.0, "ms", target=Target("max", 50)).met is False
    assert Figure("x", "p99", None, "ms", target=Target("max", 50)).met is None
    assert Figure("x", "rss", 10.0, "MB").met is None
    with pytest.raises(ValueError):
        Target("between", 1)


def test_format_value():
    assert format_value(123456.7, "rows/s") == "123,457"
    assert format_value(100.49, "MB") == "100.5"  # next to a 100 MB target
    assert format_value(12.34, "ms") == "12.3"
    assert format_value(1.234, "ms") == "1.23"
    assert format_value(None, "ms") == "n/a"


def test_table_rendering():
    figures = [
        Figure("pg_small", "rows/s, pipeline up → all acked", 80_000, "rows/s",
               baseline=100_000, baseline_name="pg_recvlogical",
               target=Target("ratio_min", 0.9)),
        Figure("latency", "commit → broker ack p99", 12.5, "ms", target=Target("max", 50)),
    ]
    table = render_table(figures)
    lines = table.splitlines()
    assert len(lines) == 4
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "| 80,000 rows/s " in lines[2]
    assert "100,000 rows/s (pg_recvlogical)" in lines[2]
    assert "0.80×" in lines[2] and "≥ 0.9×" in lines[2] and "**no**" in lines[2]
    assert "≤ 50 ms" in lines[3] and "| yes " in lines[3]
    report = {"date": "2026-01-01 00:00:00 UTC", "size": "small", "elapsed_s": 12.0,
              "command": "python -m bench", "machine": {"cores": 2}, "versions": {"x": "1"},
              "notes": {"pg_small": "some words"}}
    md = render_markdown(report, figures)
    assert table in md and "- **pg_small**: some words" in md and "x 1" in md


def test_write_report(tmp_path):
    fig = Figure("s", "f", 2.0, "ms", baseline=4.0, target=Target("max", 3))
    md, js = write_report(tmp_path / "out", {"date": "d", "notes": {}}, [fig])
    data = json.loads(js.read_text())
    assert data["figures"][0]["ratio"] == 0.5
    assert data["figures"][0]["met"] is True
    assert data["figures"][0]["target"]["text"] == "≤ 3 ms"
    assert md.read_text().startswith("# Benchmark results")
