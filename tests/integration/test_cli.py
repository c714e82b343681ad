"""The command line as users run it: `python -m cdc validate|run CONFIG`, `--version`.

Bad configuration is refused before anything starts: exit code 2 (ConfigError) and
one line naming the file, the key path and what was expected.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc import __version__
from cdc.errors import ConfigError
from tests.integration.pipeline_helpers import write_config
from tests.integration.services import REPO_ROOT, wait_until

CONFIG_ERROR = ConfigError.exit_code
assert CONFIG_ERROR == 2

DSN = "postgresql://cdc:secret@127.0.0.1:1/shop"
BOOTSTRAP = "127.0.0.1:1"


def cdc(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Any:
    """Run `python -m cdc ARGS` from the repository root; return the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PG_DSN", "KAFKA_BOOTSTRAP")}
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cdc", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_version():
    result = cdc("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cdc, version {__version__}"


def test_validate_accepts_the_example(tmp_path: Path):
    result = cdc(
        "validate",
        "config/examples/orders.yaml",
        env={"PG_DSN": "postgresql://cdc:secret@db:5432/shop"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "config/examples/orders.yaml: ok (1 pipeline(s): orders)"
    assert "secret" not in result.stdout + result.stderr


def test_validate_example_without_pg_dsn_names_the_variable():
    result = cdc("validate", "config/examples/orders.yaml")
    assert result.returncode == CONFIG_ERROR
    assert result.stderr.strip() == (
        "error: config/examples/orders.yaml: pipelines[0].source.dsn: expected environment "
        "variable PG_DSN to be set (or a default: ${PG_DSN:-default}), got it unset"
    )
    assert result.stdout == ""


# (pipeline overrides for write_config, key path, what the message says is expected)
MISTAKES = {
    "unknown key with a suggestion": (
        {"source": {"slott": "orders"}},
        "pipelines[0].source.slott",
        "unknown key 'slott' (did you mean 'slot'?)",
    ),
    "missing required key": (
        {"sink": {"properties": None}},
        "pipelines[0].sink.properties",
        "required key 'properties' is missing",
    ),
    "wrong type": (
        {"source": {"create": "yes"}},
        "pipelines[0].source.create",
        "expected true or false, got 'yes'",
    ),
    "bad enum": (
        {"source": {"snapshot": "sometimes"}},
        "pipelines[0].source.snapshot",
        "expected one of initial, never, always, initial_only, got 'sometimes'",
    ),
    "unset variable": (
        {"source": {"dsn": "${CDC_TEST_UNSET_DSN}"}},
        "pipelines[0].source.dsn",
        "expected environment variable CDC_TEST_UNSET_DSN to be set "
        "(or a default: ${CDC_TEST_UNSET_DSN:-default}), got it unset",
    ),
    "acks=1 override": (
        {"sink": {"properties": {"acks": "1"}}},
        "pipelines[0].sink.properties.acks",
        "expected all or -1 (or no setting), got '1': with fewer acknowledgements a broker "
        "failure can lose events that are already checkpointed",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_validate_names_file_key_and_expectation(mistake: str, tmp_path: Path):
    overrides, key, expected = MISTAKES[mistake]
    config = write_config(tmp_path, DSN, BOOTSTRAP, **overrides)
    result = cdc("validate", str(config))
    assert result.returncode == CONFIG_ERROR, result.stdout
    assert result.stderr.strip() == f"error: {config}: {key}: {expected}"
    assert result.stdout == ""


def test_validate_reports_yaml_syntax_error_with_line_and_column(tmp_path: Path):
    config = tmp_path / "broken.yaml"
    config.write_text("version: 1\npipelines:\n  - name: orders\n    source: {type: postgres\n")
    result = cdc("validate", str(config))
    assert result.returncode == CONFIG_ERROR
    message = result.stderr.strip()
    assert message.startswith(f"error: {config}: invalid YAML at line 5, column 1: ")
    assert "expected ',' or '}'" in message


def test_validate_lists_every_problem_at_once(tmp_path: Path):
    config = write_config(tmp_path, DSN, BOOTSTRAP, source={"slott": "x", "snapshot": "sometimes"})
    result = cdc("validate", str(config))
    assert result.returncode == CONFIG_ERROR
    assert result.stderr.splitlines() == [
        f"error: {config}: 2 problems:",
        f"  {config}: pipelines[0].source.snapshot: expected one of initial, never, always, "
        "initial_only, got 'sometimes'",
        f"  {config}: pipelines[0].source.slott: unknown key 'slott' (did you mean 'slot'?)",
    ]


@pytest.fixture
def listeners() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two listening sockets standing in for PostgreSQL and the broker."""
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        socks.append(s)
    yield socks[0], socks[1]
    for s in socks:
        s.close()


def accepted(sock: socket.socket) -> int:
    """How many connections are waiting on `sock`."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_run_refuses_bad_config_before_connecting(
    tmp_path: Path, listeners: tuple[socket.socket, socket.socket]
):
    pg, broker = listeners
    dsn = f"postgresql://cdc@127.0.0.1:{pg.getsockname()[1]}/shop"
    bootstrap = f"127.0.0.1:{broker.getsockname()[1]}"
    config = write_config(
        tmp_path,
        dsn,
        bootstrap,
        source={"snapshot": "sometimes"},
        sink={"properties": {"acks": "1"}},
    )
    result = cdc("run", str(config))
    assert result.returncode == CONFIG_ERROR
    assert f"{config}: 2 problems:" in result.stderr
    assert "pipelines[0].source.snapshot: expected one of" in result.stderr
    assert "pipelines[0].sink.properties.acks: expected all or -1" in result.stderr
    assert (accepted(pg), accepted(broker)) == (0, 0)
    # The same file with the mistakes fixed does connect: the listeners are reachable.
    good = write_config(tmp_path, dsn, bootstrap, name="good")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "run", str(good)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: accepted(pg), timeout=20, what="the fixed config to connect")
    finally:
        proc.kill()
        proc.wait(10)
