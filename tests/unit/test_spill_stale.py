from connectors.postgres.spill import MemoryBudget, SpillBuffer, remove_stale


def test_remove_stale_only_touches_its_prefix(tmp_path):
    mine = SpillBuffer(threshold=1, directory=str(tmp_path), prefix="cdc-stream-slot_a-")
    mine.append(b"x" * 10, size=10)
    mine.append(b"y" * 10, size=10)
    other = tmp_path / "cdc-stream-slot_b-123.spill"
    other.write_bytes(b"")
    unrelated = tmp_path / "cdc-stream-slot_a-notes.txt"
    unrelated.write_text("keep")
    assert mine.path is not None
    removed = remove_stale(str(tmp_path), "cdc-stream-slot_a-")
    assert removed == [mine.path.rsplit("/", 1)[1]]
    assert other.exists() and unrelated.exists()
    assert remove_stale(str(tmp_path / "missing"), "x") == []


def test_one_memory_budget_for_all_open_buffers(tmp_path):
    budget = MemoryBudget(100)
    big = SpillBuffer(100, str(tmp_path), budget=budget)
    small = SpillBuffer(100, str(tmp_path), budget=budget)
    big.append(b"a", size=80)
    small.append(b"b", size=15)
    assert not big.spilled and budget.used == 95
    small.append(b"c", size=15)  # 110 > 100: the largest holder spills, not the appender
    assert big.spilled and not small.spilled
    assert budget.used == 30
    assert list(big.replay()) == [b"a"] and list(small.replay()) == [b"b", b"c"]
    assert budget.used == 0 and not budget.buffers
