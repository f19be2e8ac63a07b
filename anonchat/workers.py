"""``--workers N``: N node processes on one listening port.

The parent binds the port and never accepts on it; each worker is a whole
``twistd -n anonchat`` node (own node id, presence, feed, flusher, all on
the same Redis) that adopts the inherited socket, so the kernel hands each
new connection to whichever worker accepts first. A shared socket rather
than SO_REUSEPORT: one bind, one place that can fail, and a dead worker
strands no queue of its own. Only TCP sockets can be adopted; for
``ssl:`` endpoints each worker builds the TLS context from the same
endpoint string and wraps the adopted socket in TLS itself.

The parent relays every worker's log (the workers log JSON to their stdout,
so each event keeps its level, time and fields, with ``[worker N]`` in
front), restarts a worker that dies after a back-off that grows while it
keeps dying, fails the start (exit 1) if a worker cannot start the first
time, and on stop sends every worker SIGTERM and waits for their drains.
Only the parent writes ``--pidfile``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from datetime import datetime
from typing import Any, Callable, Mapping

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv6Address
from twisted.internet.error import CannotListenError, ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import LogEvent, Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from anonchat.service import StartFailed, _one_line
from anonchat.settings import Settings

log = Logger()

#: the environment variable that makes a twistd anonchat process a worker
SEAT_VARIABLE = "ANONCHAT_WORKER_SEAT"
#: where a worker finds the inherited listening socket
CHILD_FD = 3
#: seconds a worker has to drain after SIGTERM before it is killed
DRAIN_WAIT = 60.0

_TWISTD = "from twisted.scripts.twistd import run; run()"


@attrs.frozen
class WorkerSeat:
    """What a worker is told about its place: its number, the inherited
    socket (descriptor and address family) and its parent's pid."""

    number: int
    fd: int
    family: int
    parent: int

    def to_environ(self) -> str:
        return f"number={self.number} fd={self.fd} family={self.family} parent={self.parent}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerSeat | None:
        text = environ.get(SEAT_VARIABLE)
        if not text:
            return None
        fields = dict(item.split("=", 1) for item in text.split())
        return cls(**{name: int(fields[name]) for name in ("number", "fd", "family", "parent")})


@attrs.define
class RestartBackoff:
    """How long to wait before restarting a worker that died: ``first``,
    doubling each time it dies again within ``steady`` seconds of its start,
    at most ``most``; a worker that ran ``steady`` seconds starts afresh."""

    first: float = 0.5
    most: float = 30.0
    steady: float = 10.0
    _quick_deaths: int = 0

    def after(self, ran_for: float) -> float:
        if ran_for >= self.steady:
            self._quick_deaths = 0
        delay = min(self.first * 2 ** self._quick_deaths, self.most)
        self._quick_deaths += 1
        return delay


def worker_argv(command_line: Mapping[str, str | None], python: str = sys.executable) -> list[str]:
    """The command that starts one worker: the parent's own anonchat options
    (same environment, same ``--config``), as one node (``--workers 1`` wins
    over any file or environment), in the foreground, without a pid file,
    logging JSON for the parent to relay."""
    argv = [python, "-c", _TWISTD, "-n", "--pidfile=", "anonchat"]
    for name, value in command_line.items():
        if value is not None and name not in ("workers", "log-format"):
            argv += [f"--{name}", value]
    return argv + ["--workers", "1", "--log-format", "json"]


def relayed_event(line: str, worker: int, stream: str) -> LogEvent:
    """A worker's log line as an event of the parent's log. A JSON event
    keeps its level, namespace, time and fields; any other line (Python's
    own last words on stderr) is relayed as text."""
    try:
        fields = json.loads(line)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not {"time", "level", "namespace", "message"} <= fields.keys():
        return {"log_format": "[worker {worker}] {worker_text}", "worker_text": line, "worker": worker,
                "log_level": LogLevel.error if stream == "err" else LogLevel.info,
                "log_namespace": __name__, "log_time": _now()}
    event: LogEvent = {k: v for k, v in fields.items() if k not in ("time", "level", "namespace", "message")}
    try:
        level = LogLevel.levelWithName(str(fields["level"]))
    except Exception:
        level = LogLevel.info
    try:
        when = datetime.fromisoformat(str(fields["time"])).timestamp()
    except ValueError:
        when = _now()
    text = "[worker {worker}] {worker_text}"
    if isinstance(fields.get("failure"), str):
        text += "\n{failure}"
    event.update(log_format=text, worker_text=str(fields["message"]), worker=worker, log_level=level,
                 log_namespace=str(fields["namespace"]), log_time=when)
    return event


def _now() -> float:
    return datetime.now().timestamp()


# -- in the worker ------------------------------------------------------------------


class _AdoptingReactor:
    """The reactor, but a ``listenTCP``/``listenSSL`` adopts the inherited
    socket instead of binding one, so the endpoint string (and the TLS
    context an ``ssl:`` one makes) is parsed exactly as without workers."""

    def __init__(self, reactor: Any, seat: WorkerSeat) -> None:
        self._reactor = reactor
        self._seat = seat

    def listenTCP(self, port: int, factory: IProtocolFactory, backlog: int = 50,
                  interface: str = "") -> IListeningPort:
        return self._reactor.adoptStreamPort(self._seat.fd, self._seat.family, factory)  # type: ignore[no-any-return]

    def listenSSL(self, port: int, factory: IProtocolFactory, contextFactory: Any, backlog: int = 50,
                  interface: str = "") -> IListeningPort:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        return self.listenTCP(port, TLSMemoryBIOFactory(contextFactory, False, factory), backlog, interface)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """``--port`` for a worker: the same endpoint, on the parent's socket."""

    def __init__(self, reactor: Any, seat: WorkerSeat, description: str) -> None:
        self._reactor = _AdoptingReactor(reactor, seat)
        self._description = description

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        try:
            endpoint = serverFromString(self._reactor, self._description)
        except Exception as e:
            return fail(CannotListenError(None, self._description, e))
        return endpoint.listen(protocolFactory)  # type: ignore[no-any-return]


def die_with_parent(seat: WorkerSeat) -> None:
    """Linux: SIGTERM this worker (a drain) when the parent dies, even of
    SIGKILL, so no orphan keeps serving an old configuration."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != seat.parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


# -- in the parent ------------------------------------------------------------------


class _NoAccept(Factory):
    """The parent's port never reads; should it ever accept, it closes."""

    noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None


class WorkerProcess(ProcessProtocol):
    """One worker as the parent sees it: its output, relayed line by line,
    whether it said it is ready, and its end."""

    def __init__(self, number: int, on_ready: Callable[[], None], on_ended: Callable[[WorkerProcess, int], None],
                 started_at: float) -> None:
        self.number = number
        self._on_ready = on_ready
        self.started_at = started_at
        self.ready = False
        self.ended: Deferred[int] = Deferred()
        self._on_ended = on_ended
        self._partial = {1: b"", 2: b""}
        self.pid: int | None = None

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)  # gone from the transport once it ended

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            self._relay(childFD, line)

    def _relay(self, childFD: int, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line:
            return
        event = relayed_event(line, self.number, "err" if childFD == 2 else "out")
        log.observer(event)
        if event.get("worker_ready") and not self.ready:
            self.ready = True
            self._on_ready()

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._relay(fd, rest)
        value = reason.value
        if isinstance(value, ProcessDone):
            status = 0
        elif isinstance(value, ProcessTerminated) and value.exitCode is not None:
            status = value.exitCode
        else:
            status = -(getattr(value, "signal", None) or 0)
        self._on_ended(self, status)
        self.ended.callback(status)


def _how(status: int) -> str:
    return f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"


class WorkerSupervisor(service.Service):
    """The parent of ``--workers N``: binds the port, runs the workers."""

    def __init__(self, settings: Settings, command_line: Mapping[str, str | None], reactor: Any, *,
                 on_start_failed: Callable[[StartFailed], None] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.reactor = reactor
        self._argv = worker_argv(command_line)
        self._environ = dict(os.environ if environ is None else environ)
        self._on_start_failed = on_start_failed
        self.start_failure: StartFailed | None = None
        self.port: IListeningPort | None = None
        self._family = socket.AF_INET
        self.workers: dict[int, WorkerProcess] = {}
        self._backoff = {n: RestartBackoff() for n in range(1, settings.workers + 1)}
        self._restarts: dict[int, Any] = {}
        self._started = False  # every worker has been ready once
        self._stopping = False
        self._starting: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(self._start_failed)

    async def _start(self) -> None:
        try:
            endpoint = serverFromString(self.reactor, self.settings.port)
        except Exception as e:
            raise StartFailed(f"--port {self.settings.port!r} is not a server endpoint: {_one_line(e)}") from None
        try:
            port = await endpoint.listen(_NoAccept())
        except CannotListenError as e:
            raise StartFailed(_one_line(e)) from None
        port.stopReading()  # type: ignore[attr-defined]  # the workers accept, never the parent
        self.port = port
        self._family = socket.AF_INET6 if isinstance(port.getHost(), IPv6Address) else socket.AF_INET
        for number in range(1, self.settings.workers + 1):
            self._spawn(number)
        log.info("anonchat: {workers} workers sharing {port}", workers=self.settings.workers, port=self.settings.port)

    def _spawn(self, number: int) -> None:
        self._restarts.pop(number, None)
        if self._stopping or self.port is None:
            return
        seat = WorkerSeat(number, CHILD_FD, self._family, os.getpid())
        environ = dict(self._environ, **{SEAT_VARIABLE: seat.to_environ()})
        worker = WorkerProcess(number, self._note_ready, self._ended, self.reactor.seconds())
        self.reactor.spawnProcess(worker, self._argv[0], self._argv, env=environ, path=os.getcwd(),
                                  childFDs={0: "w", 1: "r", 2: "r", CHILD_FD: self.port.fileno()})  # type: ignore[attr-defined]
        worker.transport.closeStdin()  # type: ignore[union-attr]
        self.workers[number] = worker
        log.info("worker {worker} started (pid {pid})", worker=number, pid=worker.pid)

    @property
    def ready(self) -> bool:
        return len(self.workers) == self.settings.workers and all(w.ready for w in self.workers.values())

    def _ended(self, worker: WorkerProcess, status: int) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self._stopping:
            log.info("worker {worker} (pid {pid}) {how}", worker=worker.number, pid=worker.pid, how=_how(status))
            return
        if not worker.ready and not self._started:
            self._fail(StartFailed(f"worker {worker.number} {_how(status)} before it was ready"))
            return
        delay = self._backoff[worker.number].after(self.reactor.seconds() - worker.started_at)
        log.warn("worker {worker} (pid {pid}) {how}; restarting it in {delay:g} s", worker=worker.number,
                 pid=worker.pid, how=_how(status), delay=delay)
        self._restarts[worker.number] = self.reactor.callLater(delay, self._spawn, worker.number)

    def _note_ready(self) -> None:
        if self.ready and not self._started:
            self._started = True
            log.info("all {workers} workers ready", workers=self.settings.workers)

    def _fail(self, why: StartFailed) -> None:
        if self.start_failure is not None:
            return
        self.start_failure = why
        log.critical("anonchat could not start: {why}", why=str(why))
        if self._on_start_failed is not None:
            self._on_start_failed(why)

    def _start_failed(self, failure: Failure) -> None:
        if failure.check(StartFailed):
            self._fail(failure.value)  # type: ignore[arg-type]
        else:
            log.failure("anonchat could not start", failure=failure)
            self._fail(StartFailed(f"{failure.type.__name__}: {_one_line(failure.value)}"))

    def reload(self) -> None:
        """SIGHUP: every worker reads its blocked words file again."""
        for worker in self.workers.values():
            worker.transport.signalProcess("HUP")  # type: ignore[union-attr]

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        for pending in self._restarts.values():
            if pending.active():
                pending.cancel()
        self._restarts.clear()
        if self.port is not None:
            port, self.port = self.port, None
            stopped = port.stopListening()  # the parent's copy; each worker closes its own as it drains
            if stopped is not None:
                await stopped
        workers = list(self.workers.values())
        for worker in workers:
            worker.transport.signalProcess("TERM")  # type: ignore[union-attr]
        if workers:
            log.info("draining {count} workers", count=len(workers))
        kills = [self.reactor.callLater(DRAIN_WAIT, self._kill, worker) for worker in workers]
        await DeferredList([worker.ended for worker in workers], consumeErrors=True)
        for kill in kills:
            if kill.active():
                kill.cancel()
        log.info("all workers stopped")

    def _kill(self, worker: WorkerProcess) -> None:
        log.warn("worker {worker} (pid {pid}) still draining after {wait:g} s; killing it", worker=worker.number,
                 pid=worker.pid, wait=DRAIN_WAIT)
        try:
            worker.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception:
            pass
