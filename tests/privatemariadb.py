"""A MariaDB primary and a GTID replica of the tests' own, for what the shared
server must never see: replication stopped, lagging, a replica killed.

Each server has its data directory, socket and free port under one temporary
folder and dies with the test process (SIGKILL at exit, and the kernel's
parent-death signal should the process itself be killed: so servers are
launched from the reactor's thread, which lives as long as the process,
never from a pool thread trial stops after each test). Starting the pair
costs a few seconds, so a test module starts it once (``shared_pair``) and
each test takes a fresh database on it (``MariaDBPair.fresh_database``).
Without the binaries the tests are skipped, unless
``ANONCHAT_TEST_REQUIRE_SERVICES=1``, which fails them.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from twisted.internet import threads
from twisted.trial.unittest import TestCase

from tests.childprocess import ChildServer
from tests.serverprocess import free_port
from tests.services import unavailable

SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_NAMES = ("mariadb-install-db", "mysql_install_db")
SEARCH_PATH = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
#: small InnoDB files and buffers: these servers hold a few hundred rows
SERVER_OPTIONS = ("--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M", "--skip-name-resolve=0",
                  "--performance-schema=OFF", "--max-connections=60")
STARTUP_SECONDS = 30.0
CATCH_UP_SECONDS = 20.0


def _binary(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return found
    unavailable(f"no {' or '.join(names)} for a private MariaDB")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies."""
    with_errno = ctypes.CDLL(None, use_errno=True)
    with_errno.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class PrivateMariaDB(ChildServer):
    """One ``mariadbd`` on 127.0.0.1:``port``; root has no password.
    ``launch`` runs in the reactor's thread; the blocking methods in a pool
    thread (``await start()`` does both)."""

    def __init__(self, folder: str, name: str, server_id: int, *extra: str) -> None:
        self.datadir = os.path.join(folder, name)
        self.socket = os.path.join(folder, f"{name}.sock")
        self.error_log = os.path.join(folder, f"{name}.err")
        self.port = free_port()
        self.server_id = server_id
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, **query: str) -> str:
        tail = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return f"mysql://root:@127.0.0.1:{self.port}/{database}{tail}"

    def install(self) -> None:
        subprocess.run(
            [_binary(INSTALL_NAMES), "--no-defaults", f"--datadir={self.datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db", *SERVER_OPTIONS[:2]],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, check=True, timeout=120,
        )

    async def start(self) -> None:
        """Start (again, on the same port and data) and wait until it answers."""
        self.launch()
        await threads.deferToThread(self.wait_ready)

    def launch(self) -> None:
        self.process = subprocess.Popen(
            [_binary(SERVER_NAMES), "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root", f"--server-id={self.server_id}",
             f"--pid-file={self.datadir}.pid", f"--log-error={self.error_log}", *SERVER_OPTIONS, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                self.query("SELECT 1")
                return
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"private MariaDB {self.datadir} did not start; see {self.error_log}") from None
                time.sleep(0.1)

    def query(self, sql: str, *args: Any, database: str | None = None) -> list[tuple[Any, ...]]:
        """One statement on a fresh connection (autocommit); its rows."""
        import pymysql

        db = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", database=database,
                             charset="utf8mb4", connect_timeout=2, read_timeout=30, autocommit=True)
        try:
            with db.cursor() as cursor:
                cursor.execute(sql, args or None)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            db.close()


class MariaDBPair:
    """A primary writing a binary log and a replica following it by GTID."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="anonchat-mariadb-")
        self.primary = PrivateMariaDB(self.folder, "primary", 1, "--log-bin=primary-bin", "--binlog-format=ROW")
        self.replica = PrivateMariaDB(self.folder, "replica", 2)
        self._databases = 0

    async def start(self) -> None:
        """Install both (the replica is a copy of the primary's fresh data
        directory), start both, and start replication."""
        await threads.deferToThread(self.primary.install)
        await threads.deferToThread(shutil.copytree, self.primary.datadir, self.replica.datadir)
        await self.primary.start()
        await self.replica.start()
        await threads.deferToThread(self._replicate)

    def _replicate(self) -> None:
        self.replica.query(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER='root', MASTER_PASSWORD='',"
            " MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", self.primary.port)
        self.replica.query("START SLAVE")

    def cleanup(self) -> None:
        self.replica.kill()
        self.primary.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def caught_up(self, timeout: float = CATCH_UP_SECONDS) -> None:
        """Wait until the replica has applied everything the primary has
        written; fails after ``timeout``."""
        (position,), = self.primary.query("SELECT @@gtid_binlog_pos")
        (reached,), = self.replica.query("SELECT MASTER_GTID_WAIT(%s, %s)", position, timeout)
        if reached != 0:
            raise AssertionError(f"the replica did not reach the primary's {position} in {timeout}s")

    async def healthy(self) -> None:
        """The replica running and replicating again, whatever a test did."""
        self.primary.resume()
        self.replica.resume()
        if not self.replica.running:
            await self.replica.start()
        await threads.deferToThread(self.replica.query, "START SLAVE")  # a note if running already
        await threads.deferToThread(self.caught_up)

    def fresh_database(self) -> str:
        """A new empty database on the primary, already on the replica too."""
        self._databases += 1
        name = f"anonchat_{self._databases}"
        self.primary.query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        self.caught_up()
        return name


_shared: MariaDBPair | None = None


async def shared_pair(test: TestCase) -> MariaDBPair:
    """The pair every test of this process shares, started on first use and
    killed at exit, made healthy again for ``test``."""
    global _shared
    if _shared is None:
        _binary(SERVER_NAMES)
        _binary(INSTALL_NAMES)
        pair = MariaDBPair()
        atexit.register(pair.cleanup)
        try:
            await pair.start()
        except BaseException:
            pair.cleanup()
            raise
        _shared = pair
    await _shared.healthy()
    return _shared
