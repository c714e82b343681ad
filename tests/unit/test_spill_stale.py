from connectors.postgres.spill import SpillBuffer, remove_stale


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
