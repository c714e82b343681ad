import gc

from cdc.checkpoint import Checkpointer


def test_position_moves_only_past_fully_acked_closed_transactions():
    cp = Checkpointer()
    t1 = cp.begin()
    t1.pending = 2
    cp.commit(t1, 100)
    t2 = cp.begin()
    t2.pending = 1
    cp.commit(t2, 200)
    assert cp.advance() is None
    # The later transaction is acknowledged first (another partition): no move yet.
    t2.on_delivery(None, None)
    assert cp.advance() is None
    t1.on_delivery(None, None)
    assert cp.advance() is None
    t1.on_delivery(None, None)
    assert cp.advance() == 200
    assert cp.idle


def test_open_transaction_blocks_later_ones():
    cp = Checkpointer()
    t1 = cp.begin()  # still receiving changes: not closed
    t2 = cp.begin()
    cp.commit(t2, 50)
    assert cp.advance() is None
    cp.commit(t1, 40)
    assert cp.advance() == 50


def test_empty_transactions_and_positionless_commits():
    cp = Checkpointer()
    cp.commit(cp.begin(), 10)
    cp.commit(cp.begin(), None)  # nothing to confirm, but must not block
    assert cp.advance() == 10
    assert cp.acked_position == 10


def test_delivery_failure_is_recorded_and_not_counted():
    cp = Checkpointer()
    t = cp.begin()
    t.pending = 1
    cp.commit(t, 5)

    class Err:
        def str(self):
            return "too large"

    t.on_delivery(Err(), "msg")
    assert cp.failure is not None
    assert cp.advance() is None


def test_acknowledged_transactions_report_their_commit_latency():
    import time

    cp = Checkpointer()
    a, b = cp.begin(), cp.begin()
    a.pending = 1
    now_us = int(time.time() * 1e6)
    cp.commit(a, 10, now_us - 20_000)  # committed 20 ms ago
    cp.commit(b, 20, 0)  # no commit time known: counted, not timed
    assert cp.advance() is None
    assert cp.take_stats() == (0, [])
    a.pending = 0
    assert cp.advance() == 20
    acked, latencies = cp.take_stats()
    assert acked == 2
    assert len(latencies) == 1 and 0.02 <= latencies[0] < 1.0
    assert cp.take_stats() == (0, [])


def test_latency_histogram_exposes_cumulative_buckets():
    from prometheus_client import generate_latest

    from cdc.metrics import PipelineMetrics

    m = PipelineMetrics("latency-test")
    m.latency.observe_all([0.004, 0.009, 0.2, 1000.0])
    text = generate_latest().decode()
    line = 'cdc_commit_to_ack_seconds_bucket{le="0.01",pipeline="latency-test"} 2.0'
    assert line in text
    assert 'cdc_commit_to_ack_seconds_bucket{le="+Inf",pipeline="latency-test"} 4.0' in text
    assert 'cdc_commit_to_ack_seconds_count{pipeline="latency-test"} 4.0' in text


def test_a_source_clock_ahead_of_ours_counts_as_no_delay():
    from cdc.metrics import Latency

    latency = Latency()
    latency.observe_all([-0.5, 0.002])
    assert latency.counts[0] == 1 and latency.counts[1] == 1
    assert latency.sum == 0.002


def test_an_acknowledged_transaction_is_freed_by_reference_counting():
    # A Txn hands out bound methods of itself (a reference cycle): once acknowledged
    # it drops them, so the collector never has to find a Txn per transaction.
    gc.collect()
    gc.disable()
    try:
        cp = Checkpointer()
        for position in (1, 2):
            txn = cp.begin()
            txn.pending += 1
            cp.commit(txn, position)
            txn.on_delivery(None, None)
        del txn
        assert cp.advance() == 2
        assert gc.collect() == 0
    finally:
        gc.enable()
