"""The twistd entry: ``twistd -n anonchat [options]``. The only module that
touches the global reactor."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Sequence

from twisted.application.service import IService
from twisted.python import usage

from anonchat.settings import OPTIONS, SettingsError, resolve


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


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    from anonchat.service import AnonchatService

    reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    return AnonchatService(options.settings, reactor)


__all__ = ["Options", "makeService"]
