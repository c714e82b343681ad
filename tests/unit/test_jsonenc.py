import datetime
import decimal

from cdc.jsonenc import encode, iso_duration
from cdc.model import Interval


def test_encode_values():
    value = {
        "d": decimal.Decimal("12345.67"),
        "ts": datetime.datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 2, 29),
        "b": b"\xde\xad",
        "i": Interval(14, 3, 14706789000),
    }
    assert encode(value) == (
        b'{"d":"12345.67","ts":"2024-02-29T11:14:15.123456Z","day":"2024-02-29",'
        b'"b":"3q0=","i":"P1Y2M3DT4H5M6.789S"}'
    )
    assert encode(None) is None
    assert encode("é") == "é".encode()
    assert encode(b"raw") == b"raw"


def test_iso_duration_edge_cases():
    assert iso_duration(Interval(0, 0, 0)) == "PT0S"
    assert iso_duration(Interval(0, -1, 7_200_000_000)) == "P-1DT2H"
    assert iso_duration(Interval(0, 0, -500_000)) == "PT-0.5S"
