import os

import pytest

from cdc.errors import CdcError
from cdc.offsets import FileOffsetStore


def test_roundtrip_and_atomic_replace(tmp_path):
    store = FileOffsetStore(str(tmp_path / "sub" / "p.offsets"))
    assert store.load() is None
    store.save({"lsn": "0/1"})
    store.save({"lsn": "0/2"})
    assert store.load() == {"lsn": "0/2"}
    assert sorted(os.listdir(tmp_path / "sub")) == ["p.offsets"]  # no temp files left


def test_corrupt_file_says_what_to_do(tmp_path):
    path = tmp_path / "p.offsets"
    path.write_text("{not json")
    with pytest.raises(CdcError, match="fix or remove it"):
        FileOffsetStore(str(path)).load()
