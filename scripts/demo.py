"""`make demo`: the shop story end to end, on throwaway servers.

Starts a PostgreSQL (wal_level=logical) and a Kafka-compatible broker (Tansu)
in a temporary directory, runs `cdc run config/examples/orders.yaml`, makes
some business traffic (customers, orders, credit reservations) and prints the
events that arrive in Kafka. Everything it started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.services import (  # noqa: E402  (after the sys.path line)
    KafkaBroker,
    PostgresServer,
    free_port,
    kill_all,
    log_tail,
    make_base_dir,
    read_topic,
    run_daemon,
    stop_daemon,
    wait_until,
)

CONFIG = ROOT / "config" / "examples" / "orders.yaml"

SCHEMA = """
CREATE TABLE customers (
    id              int PRIMARY KEY,
    name            text NOT NULL,
    credit_limit    numeric(12,2) NOT NULL,
    credit_reserved numeric(12,2) NOT NULL DEFAULT 0
);
CREATE TABLE orders (
    id          serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    note        text
);
-- Old row images let the mapper see what changed (status, credit).
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
INSERT INTO customers VALUES (1, 'Acme GmbH', 1000.00, 0), (2, 'Globex Ltd', 200.00, 0);
"""

# Each string is one transaction: the order service and the customer service
# each change their own table; the log carries both to Kafka.
TRAFFIC = [
    "INSERT INTO orders (customer_id, status, amount) VALUES (1, 'pending', 250.00)",
    "UPDATE customers SET credit_reserved = credit_reserved + 250.00 WHERE id = 1",
    "UPDATE orders SET status = 'approved' WHERE id = 1",
    "INSERT INTO orders (customer_id, status, amount) VALUES (2, 'pending', 900.00)",
    "UPDATE orders SET status = 'rejected', note = 'credit limit exceeded' WHERE id = 2",
    "UPDATE orders SET note = 'gift wrap' WHERE id = 1",  # no business event
    "INSERT INTO customers VALUES (3, 'Initech', 5000.00, 0)",  # published as Debezium JSON
]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    base = make_base_dir("cdc-demo-")
    pg = PostgresServer(base / "pg")
    broker = KafkaBroker(base / "kafka")
    daemon = None
    try:
        say("starting a throwaway PostgreSQL and a Kafka-compatible broker (Tansu)")
        pg.init()
        pg.start()
        broker.start()
        dsn = pg.create_database("shop")
        with pg.connect("shop") as conn:
            conn.execute(SCHEMA)
        print(f"PostgreSQL: {dsn}\nbroker:     {broker.bootstrap}")

        say(f"cdc run {CONFIG.relative_to(ROOT)}")
        http = f"127.0.0.1:{free_port()}"
        env = {
            "PG_DSN": dsn,
            "KAFKA_BOOTSTRAP": broker.bootstrap,
            "CDC_STATE_DIR": str(base / "state"),
            "CDC_HTTP_LISTEN": http,
        }
        daemon = run_daemon(str(CONFIG), env=env, log_path=base / "cdc.log")
        wait_until(lambda: _ready(http), 60, what="the daemon to report ready")
        print(f"ready: http://{http}/readyz")

        say("business traffic")
        with pg.connect("shop") as conn:
            for sql in TRAFFIC:
                print(f"  {sql}")
                conn.execute(sql)

        say("events in Kafka")
        for topic, count in (("shop.order-events", 4), ("shop.credit-events", 1),
                             ("shop.public.customers", 3)):
            print(f"\n-- topic {topic}")
            for msg in read_topic(broker.bootstrap, topic, expect=count, timeout=30):
                _show(msg)

        say("metrics (excerpt)")
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(("cdc_events_total", "cdc_transactions_total")):
                    print(f"  {line}")

        say("SIGTERM: drain, checkpoint, exit")
        code = stop_daemon(daemon, signal.SIGTERM)
        daemon = None
        offsets = (base / "state" / "orders.offsets").read_text()
        print(f"exit code {code}; offsets file: {offsets.strip()}")
        return 0 if code == 0 else 1
    except Exception as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        log = base / "cdc.log"
        if log.exists():
            print(log_tail(log), file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            stop_daemon(daemon, signal.SIGKILL)
        broker.stop()
        pg.stop()
        kill_all()
        if os.environ.get("CDC_DEMO_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)


def _ready(http: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as resp:
            return bool(json.load(resp).get("ok"))
    except OSError:
        return False


def _show(msg) -> None:  # type: ignore[no-untyped-def]
    headers = dict(msg.headers() or [])
    kind = headers.get("event-type", b"change").decode()
    value = json.loads(msg.value()) if msg.value() else None
    if value and "source" in value and "op" in value:  # a Debezium envelope: shorten it
        value = {"op": value["op"], "before": value["before"], "after": value["after"]}
    key = msg.key().decode() if msg.key() else None
    print(f"  {kind:<16} key={key}  {json.dumps(value)}")


if __name__ == "__main__":
    t0 = time.monotonic()
    rc = main()
    print(f"\n(demo took {time.monotonic() - t0:.1f}s)")
    sys.exit(rc)
