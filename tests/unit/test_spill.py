"""SpillBuffer: bounded memory, replay in order, files removed."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from connectors.postgres.spill import SpillBuffer


def test_small_buffer_stays_in_memory(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=1000, directory=str(tmp_path))
    for i in range(5):
        buf.append(("item", i), size=10)
    assert not buf.spilled and buf.path is None
    assert list(buf.replay()) == [("item", i) for i in range(5)]
    assert os.listdir(tmp_path) == []


def test_spills_past_threshold_and_replays_in_order(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=100, directory=str(tmp_path))
    items = [(i, b"x" * 30) for i in range(1000)]
    for item in items:
        buf.append(item, size=40)
        assert buf.memory_size <= 100  # never more than the threshold held in memory
    assert buf.spilled
    assert buf.path is not None and os.path.exists(buf.path)
    assert os.listdir(tmp_path) == [os.path.basename(buf.path)]
    assert list(buf.replay()) == items
    assert os.listdir(tmp_path) == []


def test_close_removes_file(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=10, directory=str(tmp_path))
    for i in range(50):
        buf.append(i, size=8)
    assert len(os.listdir(tmp_path)) == 1
    buf.close()
    buf.close()  # idempotent
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        buf.append(1, size=1)


def test_abandoned_replay_removes_file(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=10, directory=str(tmp_path))
    for i in range(50):
        buf.append(i, size=8)
    replay = buf.replay()
    assert next(replay) == 0
    replay.close()
    assert os.listdir(tmp_path) == []


def test_forgotten_buffer_removes_file(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=10, directory=str(tmp_path))
    for i in range(50):
        buf.append(i, size=8)
    buf.replay()  # never started: its finally never runs
    del buf
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_discard_only_touches_memory(tmp_path: Path) -> None:
    buf = SpillBuffer(threshold=50, directory=str(tmp_path))
    for i in range(10):  # 0..5 spill (the 6th append passes 50), 6..9 stay in memory
        buf.append(i, size=10)
    assert buf.spilled
    buf.discard(lambda i: i % 2 == 0)
    assert buf.memory_size == 20
    assert list(buf.replay()) == [0, 1, 2, 3, 4, 5, 7, 9]
