"""`cdc test-mapper` as a user runs it: a subprocess, no database, no broker."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def cdc(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdc", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})  # fmt: skip


def test_test_mapper_prints_events_and_names_bad_lines(tmp_path):
    (tmp_path / "events.py").write_text(textwrap.dedent('''
        from cdc.model import Event

        def order_events(change):
            if change.table == "orders":
                return Event("shop.orders", str(change.key["id"]), {"type": "OrderCreated"})
            return change
    '''))
    (tmp_path / "cdc.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        pipelines:
          - name: shop
            source: {{type: postgres, dsn: "${{PG_DSN}}"}}
            mappers: [{{type: python, path: "events:order_events"}}]
            sink: {{type: kafka, format: json, properties: {{bootstrap.servers: "x:9092"}}}}
            offsets: {{path: {tmp_path}/shop.offsets}}
    """))
    (tmp_path / "changes.jsonl").write_text(
        '{"table": "orders", "after": {"id": 7}}\n'
        '{"table": "public.customers", "op": "update", "after": {"id": 3, "name": "ACME"}}\n'
    )
    done = cdc("test-mapper", "cdc.yaml", "changes.jsonl", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first == {"topic": "shop.orders", "key": 7, "value": {"type": "OrderCreated"},
                     "headers": {"cdc-event-id": "1/0"}}
    assert second["topic"] == "db.public.customers"
    assert second["value"]["op"] == "update" and second["key"] == {"id": 3}

    (tmp_path / "bad.jsonl").write_text('{"table": "orders", "after": {"id": 1}}\n{oops\n')
    done = cdc("test-mapper", "cdc.yaml", "bad.jsonl", cwd=str(tmp_path))
    assert done.returncode == 2 and "bad.jsonl:2:" in done.stderr and done.stdout == ""
