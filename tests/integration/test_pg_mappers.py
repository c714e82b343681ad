"""User mappers through the real pipeline: drop, rewrite, fan out, class with options."""

from __future__ import annotations

import textwrap

import psycopg

from tests.integration.pipeline_helpers import (
    event_id,
    header,
    key_of,
    pipeline_name,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic

MAPPERS = '''
from cdc.model import DELETE, INSERT, Event


def drop_notes(change):
    return None if change.table == "notes" else change


class OrderEvents:
    """Fans an order insert out into a business event plus the change itself."""

    def __init__(self, options):
        self.topic = options["topic"]

    def map(self, change):
        if change.table != "orders":
            return change
        if change.op == INSERT:
            change.after["status"] = change.after["status"].upper()  # rewrite
            event = Event(self.topic, str(change.key["id"]),
                          {"type": "OrderCreated", "id": change.key["id"]},
                          headers=[("event-type", b"OrderCreated")])
            return [event, change]
        if change.op == DELETE:
            return Event(self.topic, None, {"type": "OrderDeleted"})  # key from the change
        return change
'''


def test_mapper_chain_drops_rewrites_and_fans_out(tmp_path, pg_db, kafka_broker):
    (tmp_path / "shop_mappers.py").write_text(textwrap.dedent(MAPPERS))
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap,
        mappers=[
            {"type": "python", "path": "shop_mappers:drop_notes"},
            {"type": "python", "path": "shop_mappers:OrderEvents",
             "options": {"topic": "shop.events"}},
        ],
        sink={"format": "json", "topic": "{pipeline}.{table}"},
    )
    name = pipeline_name(config)
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO notes VALUES (1, 'dropped')")
                conn.execute("INSERT INTO orders VALUES (7, 'new')")
            conn.execute("DELETE FROM orders WHERE id = 7")
        events = wait_for_events(kafka_broker.bootstrap, "shop.events", 2)
        changes = wait_for_events(kafka_broker.bootstrap, f"{name}.orders", 1, settle=1.0)
    created, deleted = sorted(events, key=lambda m: value_of(m)["type"])
    assert value_of(created) == {"type": "OrderCreated", "id": 7}
    assert created.key() == b"7" and header(created, "event-type") == "OrderCreated"
    assert value_of(deleted) == {"type": "OrderDeleted"}
    assert key_of(deleted) == {"id": 7}  # left None by the mapper: the primary key
    [change] = changes
    assert value_of(change)["after"] == {"id": 7, "status": "NEW"}
    # The note was change 0 of the transaction, the order change 1; the order's
    # two records are its events 0 and 1.
    commit, index = event_id(created).split("/")[:2]
    assert index == "1"
    assert event_id(created) == f"{commit}/1"
    assert event_id(change) == f"{commit}/1/1"
    assert read_topic(kafka_broker.bootstrap, f"{name}.notes", timeout=2, idle=1.0) == []
