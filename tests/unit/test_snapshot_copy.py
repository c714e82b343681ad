from connectors.postgres.snapshot import unescape_copy


def test_unescape_copy_text_format():
    assert unescape_copy(b"plain") == b"plain"
    assert unescape_copy(b"a\\tb\\nc\\\\d") == b"a\tb\nc\\d"
    assert unescape_copy(b"\\101\\x42") == b"AB"
    assert unescape_copy(b"\\\\x00ff") == b"\\x00ff"  # bytea hex text, escaped once by COPY
    assert unescape_copy(b"trailing\\") == b"trailing\\"
