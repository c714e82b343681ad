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
