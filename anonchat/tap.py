"""The twistd entry: ``twistd -n anonchat [options]``. The only module that
touches the global reactor, and the process: its exit status, its open
file limit, its log format.

twistd exits 0 whenever its reactor stops, and has no hook to change that,
so a failed start sets the status at interpreter exit, after twistd has
finished its own clean-up; that 1 is what makes systemd restart the node.
"""

from __future__ import annotations

import atexit
import os
import resource
import signal
import sys
from typing import Any, Callable, Sequence

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized

from anonchat.logs import json_observer_factory
from anonchat.settings import OPTIONS, SettingsError, resolve
from anonchat.workers import SEAT_VARIABLE, AdoptedEndpoint, WorkerSeat, WorkerSupervisor, die_with_parent

log = Logger()

#: what to raise the soft open file limit to when the hard limit is unlimited
#: (Linux refuses more than fs.nr_open, by default 1048576)
UNLIMITED_NOFILE_TARGET = 1_048_576


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Anonymous real-time chat: STOMP over WebSocket and SockJS at /ws-chat. "
        "Every option can also come from the --config ini file ([anonchat] section) "
        "or an ANONCHAT_<NAME> environment variable; flags win over env, env over file."
    )
    # usage.Options would print "[default: ...]" itself; it is in the help
    # text instead, once, and only where there is a value to show
    optParameters = [
        [option.name, None, None, option.help if option.default is None else f"{option.help} [default: {option.default}]"]
        for option in OPTIONS
    ]

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """twistd answers a usage error with its whole help, then the error;
        we say what is wrong in one line instead, and how to get the help."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            sys.stderr.write(f"twistd anonchat: {e}\nTry 'twistd anonchat --help' for the options.\n")
            sys.stderr.flush()
            raise SystemExit(1) from None

    def postOptions(self) -> None:
        try:
            self.settings = resolve({o.name: self[o.name] for o in OPTIONS}, os.environ)
        except SettingsError as e:
            raise usage.UsageError(str(e)) from None


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """SIGTERM is our normal stop: drain, then exit 0. (twistd's own handler
    would re-raise the signal at exit, so the exit status would say killed.)"""

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, handler)


def _reload_on_sighup(reactor: Any, reload: Callable[[], None]) -> None:
    """SIGHUP reads the blocked words file again (``systemctl reload``)."""
    signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(reload))


def raise_open_file_limit(getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
                          setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit) -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every connection is a
    file descriptor, and the usual soft default (1024) is a few hundred users."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_NOFILE_TARGET if hard == resource.RLIM_INFINITY else hard
    limit = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            limit = target
        except (ValueError, OSError) as e:
            log.warn("could not raise the open file limit to {target}: {error}", target=target, error=str(e))
    log.info("open file limit {limit} (was {soft}, hard limit {hard})", limit=_figure(limit), soft=_figure(soft),
             hard=_figure(hard))


def _figure(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def _exit_1_at_interpreter_exit() -> None:
    def exit_1() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    atexit.register(exit_1)


class _JsonLogs(MultiService):
    """Hands twistd a JSON log observer. twistd takes one from the
    application's ILogObserver component, and a plugin reaches the
    application only when its service is attached to it."""

    def __init__(self, inner: IService, observer: Callable[[], ILogObserver]) -> None:
        super().__init__()
        self._observer = observer
        inner.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver) is None:
            parent.setComponent(ILogObserver, self._observer())
        super().setServiceParent(parent)


def _say_ready_to_the_parent(anonchat: Any, seat: WorkerSeat) -> None:
    """A worker tells its parent (through its log, which the parent reads)
    that it is a node serving the shared port."""

    async def when_ready() -> None:
        try:
            await anonchat.when_ready()
        except Exception:
            return  # the failed start said why; the exit status tells the parent
        log.info("worker {worker} ready (pid {pid})", worker=seat.number, pid=os.getpid(), worker_ready=True)

    Deferred.fromCoroutine(when_ready())


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from anonchat.service import AnonchatService, StartFailed

    def start_failed(why: StartFailed) -> None:
        _exit_1_at_interpreter_exit()
        reactor.callWhenRunning(reactor.stop)

    reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    raise_open_file_limit()
    node: IService
    seat = WorkerSeat.from_environ(os.environ)
    if options.settings.workers > 1:
        supervisor = WorkerSupervisor(options.settings, {o.name: options[o.name] for o in OPTIONS}, reactor,
                                      on_start_failed=start_failed)
        reactor.callWhenRunning(_reload_on_sighup, reactor, supervisor.reload)
        node = supervisor
    else:
        endpoint = AdoptedEndpoint(reactor, seat, options.settings.port) if seat is not None else None
        anonchat = AnonchatService(options.settings, reactor, on_start_failed=start_failed, endpoint=endpoint)
        reactor.callWhenRunning(_reload_on_sighup, reactor, anonchat.reload)
        if seat is not None:
            os.environ.pop(SEAT_VARIABLE, None)
            die_with_parent(seat)
            reactor.callWhenRunning(_say_ready_to_the_parent, anonchat, seat)
        node = anonchat
    twistd = getattr(options, "parent", None)
    if options.settings.log_format == "json" and twistd is not None and not twistd.get("syslog"):
        # an explicit --logger wins over this (twistd asks it first)
        node = _JsonLogs(node, json_observer_factory(twistd.get("logfile"), bool(twistd.get("nodaemon"))))
    return node


__all__ = ["Options", "makeService"]
