"""An AnonchatService in the test process, on a free loopback port."""

from __future__ import annotations

import os
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from anonchat.service import AnonchatService
from anonchat.settings import Settings


async def start_service(test: TestCase, **overrides: Any) -> AnonchatService:
    """Start a service (embedded stores unless overridden); stopped at cleanup."""
    workdir = os.path.abspath(test.mktemp())
    os.makedirs(workdir)
    settings = attrs.evolve(Settings(), **{
        "port": "tcp:0:interface=127.0.0.1",
        "database": "sqlite:///" + os.path.join(workdir, "anonchat.sqlite3"),
        **overrides,
    })
    svc = AnonchatService(settings, reactor)
    svc.startService()
    test.addCleanup(lambda: svc.stopService() if svc.running else None)
    await svc.when_ready()
    return svc


def ws_url(svc: AnonchatService) -> str:
    return f"ws://127.0.0.1:{svc.listening_port}/ws-chat"
