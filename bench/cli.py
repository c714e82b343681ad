"""`python -m bench`: run the scenarios, print the table, write bench/results/latest.{md,json}."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.common import SIZES, Context, say
from bench.daemon import BenchError
from bench.env import Services
from bench.latency import latency
from bench.mariadb import mariadb_small
from bench.pg import pg_big, pg_small, wide
from bench.report import Figure, git_commit, library_versions, machine_info, write_report
from tests.integration.services import REPO_ROOT

SCENARIOS: dict[str, Callable[[Context], None]] = {
    "pg_small": pg_small,
    "pg_big": pg_big,
    "mariadb_small": mariadb_small,
    "latency": latency,
    "wide": wide,
}
DEFAULT_REPEAT = {"full": 3, "small": 1}
RESULTS = Path(__file__).resolve().parent / "results"


def _rows_option(values: list[str], scenarios: list[str]) -> dict[str, int]:
    """--rows N (every chosen scenario) or --rows SCENARIO=N; latency takes seconds."""
    rows: dict[str, int] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        targets = [name] if sep else [s for s in scenarios if s != "latency"]
        if sep and name not in SCENARIOS:
            raise SystemExit(f"--rows {value}: unknown scenario {name!r}")
        try:
            count = int(number.replace("_", ""))
        except ValueError:
            raise SystemExit(f"--rows {value}: not a number") from None
        if count < 1:
            raise SystemExit(f"--rows {value}: must be at least 1")
        for target in targets:
            rows[target] = count
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput, latency and memory of the daemon next to the raw log "
        "readers, on throwaway PostgreSQL, MariaDB and Tansu servers.",
    )
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable; default: all)")  # fmt: skip
    parser.add_argument("--size", choices=list(SIZES), default="full",
                        help="full (default, the published figures) or small (a quick run)")
    parser.add_argument("--rows", action="append", default=[], metavar="[SCENARIO=]N",
                        help="rows instead of the size's count, for every chosen scenario or "
                        "one (latency: seconds of writing)")  # fmt: skip
    parser.add_argument("--repeat", type=int,
                        help="drain each range this many times per reader, alternating; the "
                        "median is reported (default: 3 for --size full, 1 for small)")
    parser.add_argument("--rate", type=int, default=5000,
                        help="latency: transactions per second to write (default 5000)")
    parser.add_argument("--duration", type=int,
                        help="latency: seconds of writing (default 60, small: 15)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"where latest.md and latest.json go (default {RESULTS})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the servers' directory (logs, daemon configs) afterwards")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = args.scenario or list(SCENARIOS)
    rows = _rows_option(args.rows, scenarios)
    if args.duration:
        rows["latency"] = args.duration
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    date = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    command = "python -m bench" + (" " + shlex.join(argv if argv is not None else sys.argv[1:])
                                   if (argv if argv is not None else sys.argv[1:]) else "")
    services = Services(keep=args.keep)
    repeat = max(1, args.repeat if args.repeat is not None else DEFAULT_REPEAT[args.size])
    ctx = Context(services, args.size, repeat=repeat, rows=rows, rate=args.rate)
    say(f"benchmark: {', '.join(scenarios)} (size {args.size}, repeat {repeat}); "
        f"servers under {services.base}")  # fmt: skip
    failed: list[str] = []
    try:
        for name in scenarios:
            say(f"== {name}")
            try:
                SCENARIOS[name](ctx)
            except Exception as e:
                failed.append(name)
                if not isinstance(e, BenchError):
                    traceback.print_exc()
                say(f"{name}: FAILED: {type(e).__name__}: {e}")
                ctx.figures.append(Figure(name, "scenario failed (see notes)", None, ""))
                first_line = (str(e).strip().splitlines() or [""])[0]
                ctx.notes.add(name, f"FAILED: {type(e).__name__}: {first_line[:300]}")
        versions = {**services.server_versions(), **library_versions(),
                    "cdc": git_commit(REPO_ROOT)}  # fmt: skip
    finally:
        if args.keep:
            say(f"servers' directory kept: {services.base}")
        services.close()
    report = {
        "date": date,
        "size": args.size,
        "repeat": ctx.repeat,
        "scenarios": scenarios,
        "command": command,
        "elapsed_s": time.monotonic() - started,
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "versions": versions,
        "notes": ctx.notes.by_scenario,
        "details": ctx.details,
    }
    md, js = write_report(args.results, report, ctx.figures)
    print()
    print(md.read_text())
    say(f"written {md} and {js} ({report['elapsed_s']:.0f} s)")
    if failed:
        say(f"failed scenarios: {', '.join(failed)}")
        return 1
    return 0
