"""`make demo`: the B2B shop example (examples/orders/) end to end, on throwaway servers.

Starts a PostgreSQL (wal_level=logical) and a Kafka-compatible broker (Tansu)
in a temporary directory, runs `cdc run examples/orders/cdc.yaml` (two
pipelines: mined row changes -> business events and CloudEvents; the outbox),
lets the order and customer services write, prints the events in Kafka, runs
the example consumer that keeps the pre-joined "customer with recent orders"
view, replays every event to show duplicates are dropped, and prints the view.
Everything it started is stopped at the end. CDC_DEMO_KEEP=1 keeps the files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

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

EXAMPLE = ROOT / "examples" / "orders"
CONFIG = EXAMPLE / "cdc.yaml"

# Topic -> how many events the story makes there.
EXPECTED = {
    "shop.order-events": 6,      # 3 OrderCreated, 2 OrderApproved, 1 OrderRejected
    "shop.credit-events": 2,     # 2 CreditReserved
    "shop.public.customers": 3,  # CloudEvents: 2 snapshot reads, 1 insert
    "outbox.event.order": 3,     # 3 OrderPlaced (outbox, with the order lines)
    "outbox.event.customer": 1,  # 1 CreditLimitExceeded (outbox, no row change at all)
}


def load_example(name: str) -> ModuleType:
    """Import examples/orders/<name>.py (the example is not a package)."""
    spec = importlib.util.spec_from_file_location(f"orders_example_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def main() -> int:
    base = make_base_dir("cdc-demo-")
    pg = PostgresServer(base / "pg")
    broker = KafkaBroker(base / "kafka")
    daemon = None
    services, consumer = load_example("services"), load_example("consumer")
    try:
        say("starting a throwaway PostgreSQL and a Kafka-compatible broker (Tansu)")
        pg.init()
        pg.start()
        broker.start()
        dsn = pg.create_database("shop")
        view_dsn = pg.create_database("shop_view")  # the consumer's own database
        with pg.connect("shop") as conn:
            conn.execute((EXAMPLE / "schema.sql").read_text())
        print(f"PostgreSQL: {dsn} (+ shop_view for the consumer)\nbroker:     {broker.bootstrap}")

        say(f"cdc run {CONFIG.relative_to(ROOT)}   (pipelines shop_rows and shop_outbox)")
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

        say("the services write (each in its own local transaction)")
        with pg.connect("shop") as conn:
            for line in services.story(conn):
                print(f"  {line}")

        say("events in Kafka (per topic, in commit order)")
        for topic, count in EXPECTED.items():
            print(f"-- {topic}")
            messages = read_topic(broker.bootstrap, topic, expect=count, timeout=30)
            if len(messages) < count:
                raise RuntimeError(f"{topic}: {len(messages)} of {count} events arrived")
            for msg in sorted(messages, key=_commit_order):
                print(f"  {_describe(msg)}")

        say("consumer: apply the events to the customer_view (jsonb), dropping duplicates")
        counts = consumer.consume(
            broker.bootstrap, view_dsn, group="customer-view", idle=1.5,
            report=lambda topic, eid, kind, outcome: print(
                f"  {outcome:<9} {kind or '-':<22} {topic:<22} cdc-event-id={eid}"),
        )
        print(f"  {counts}")

        say("replay: a second consumer group reads everything again")
        again = consumer.consume(broker.bootstrap, view_dsn, group="customer-view-replay",
                                 idle=1.5)
        print(f"  {again}  <- every event already in processed_events: the view is unchanged")

        say("the pre-joined view: SELECT doc FROM customer_view")
        view = consumer.CustomerView(view_dsn)
        try:
            for doc in view.customers():
                _show_customer(doc)
        finally:
            view.close()

        say("SIGTERM: drain, checkpoint, exit")
        code = stop_daemon(daemon, signal.SIGTERM)
        daemon = None
        for name in ("shop_rows", "shop_outbox"):
            offsets = json.loads((base / "state" / f"{name}.offsets").read_text())
            print(f"  {name}.offsets: lsn {offsets.get('lsn')}")
        print(f"exit code {code}")
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


def _headers(msg: Any) -> dict[str, str]:
    return {k: bytes(v).decode() for k, v in msg.headers() or [] if v is not None}


def _commit_order(msg: Any) -> tuple[int, int, int]:
    # cdc-event-id of a mined change: "<commit lsn hex>/<index>"; an outbox event's
    # id is the row's uuid, so those go by key (the aggregate id: the order number).
    lsn, _, index = _headers(msg).get("cdc-event-id", "").partition("/")
    try:
        return (int(lsn, 16), int(index.split("/")[0]), 0)
    except ValueError:
        key = (msg.key() or b"").decode()
        return (0, int(key) if key.isdigit() else 0, msg.offset())


def _show_customer(doc: dict[str, Any]) -> None:
    head = {k: doc.get(k) for k in ("customer_id", "name", "credit_limit", "credit_reserved")}
    orders = doc.get("recent_orders") or []
    print(f"  {json.dumps(head)[:-1]}, \"recent_orders\": [{'' if orders else ']}'}")
    for i, order in enumerate(orders):
        fields = ("order_id", "status", "amount", "lines")
        text = json.dumps({k: order.get(k) for k in fields})
        print(f"      {text}{',' if i < len(orders) - 1 else ']}'}")


def _describe(msg: Any) -> str:
    value = json.loads(msg.value()) if msg.value() else None
    key = msg.key().decode() if msg.key() else None
    if isinstance(value, dict) and value.get("specversion"):  # a CloudEvent (structured)
        after = (value.get("data") or {}).get("after")
        return (f"{value['type']:<22} key={key}  id={value['id']} subject={value.get('subject')}"
                f" source={value['source']}\n{'':<26}data.after={json.dumps(after)}")
    if isinstance(value, dict):
        body = {k: v for k, v in value.items() if k not in ("type", "at_us")}
        return f"{value.get('type', '-'):<22} key={key:<4} {json.dumps(body)}"
    return f"{'-':<22} key={key}  {value!r}"


if __name__ == "__main__":
    t0 = time.monotonic()
    rc = main()
    print(f"\n(demo took {time.monotonic() - t0:.1f}s)")
    sys.exit(rc)
