"""Log output: one JSON object a line (``--log-format json``), and lines
that would repeat on every bad frame, throttled to one a minute per kind.

A throttled line is still counted where it is counted (``/metrics``); the
log only needs to say that it is happening, and how often, not flood the
journal with one line per hostile frame.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any, Callable
from weakref import WeakKeyDictionary

import attrs

from twisted.internet.interfaces import IReactorTime
from twisted.logger import FileLogObserver, ILogObserver, LogEvent, Logger, LogLevel, formatEvent
from twisted.python.logfile import LogFile

#: legacy ``twisted.python.log`` keys that are not fields of the event
_LEGACY_KEYS = frozenset({"message", "isError", "time", "format", "why", "failure", "printed"})
_JSON_SCALARS = (str, int, float, bool, type(None))


def event_as_json_line(event: LogEvent) -> str:
    """``event`` as one line of JSON: time, level, namespace, the formatted
    message, the failure's traceback if any, and its keyword fields."""
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0.0), timezone.utc).isoformat(timespec="milliseconds"),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        line["failure"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in line:
            continue
        line[key] = value if isinstance(value, _JSON_SCALARS) else str(value)
    return json.dumps(line, ensure_ascii=False, default=str) + "\n"


def json_file_observer(out: IO[Any]) -> ILogObserver:
    return FileLogObserver(out, event_as_json_line)


def json_observer_factory(logfile: str | None, nodaemon: bool) -> Callable[[], ILogObserver]:
    """What twistd's ``--logger`` takes: the same file twistd would write
    text to (stdout when not daemonised and no ``--logfile``, or ``-``)."""

    def factory() -> ILogObserver:
        if logfile == "-" or (nodaemon and not logfile):
            return json_file_observer(sys.stdout)
        return json_file_observer(LogFile.fromFullPath(logfile or "twistd.log"))

    return factory


class ThrottledLog:
    """At most one line per ``kind`` per ``interval`` seconds; the next line
    after a quiet spell says how many were left out.

    The clock comes with each call (the caller's own injected clock), so one
    module-level instance serves every object of a module; each clock keeps
    its own account (a test's ``Clock`` is a world of its own, the reactor
    is the process's).
    """

    def __init__(self, log: Logger, interval: float = 60.0) -> None:
        self._log = log
        self._interval = interval
        self._by_clock: WeakKeyDictionary[IReactorTime, dict[str, _Quota]] = WeakKeyDictionary()

    def emit(self, clock: IReactorTime, level: LogLevel, kind: str, format: str, /, **fields: Any) -> None:
        now = clock.seconds()
        quotas = self._by_clock.setdefault(clock, {})
        quota = quotas.get(kind)
        if quota is not None and now < quota.last + self._interval:
            quota.suppressed += 1
            return
        suppressed = quota.suppressed if quota is not None else 0
        quotas[kind] = _Quota(now)
        if suppressed:
            format += " ({suppressed} more like it since the last such line)"
            fields["suppressed"] = suppressed
        self._log.emit(level, format, **fields)

    def info(self, clock: IReactorTime, kind: str, format: str, /, **fields: Any) -> None:
        self.emit(clock, LogLevel.info, kind, format, **fields)

    def warn(self, clock: IReactorTime, kind: str, format: str, /, **fields: Any) -> None:
        self.emit(clock, LogLevel.warn, kind, format, **fields)


@attrs.define
class _Quota:
    last: float
    suppressed: int = 0
