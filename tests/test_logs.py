"""Log output: JSON lines, and refusals logged at most once a minute per kind."""

from __future__ import annotations

import io
import json
from typing import Any, Sequence

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from anonchat.logs import ThrottledLog, event_as_json_line, json_file_observer
from tests.stompfakes import frame
from tests.test_chat_room import Client, RoomTestCase


def lines(events: Sequence[dict[str, Any]], namespace: str, text: str) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == namespace and text in formatEvent(e)]


class ThrottledLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.throttled = ThrottledLog(Logger(namespace="test.throttle"), interval=60.0)

    def say(self, kind: str, n: int = 1) -> None:
        for _ in range(n):
            self.throttled.info(self.clock, kind, "refused {kind}", kind=kind)

    def test_one_line_per_kind_per_interval(self) -> None:
        with capturedLogs() as events:
            self.say("a", 50)
            self.say("b", 50)
            self.clock.advance(59.9)
            self.say("a", 10)
        self.assertEqual([formatEvent(e) for e in events], ["refused a", "refused b"])

    def test_next_line_says_how_many_were_left_out(self) -> None:
        with capturedLogs() as events:
            self.say("a", 5)
            self.clock.advance(60)
            self.say("a")
            self.clock.advance(60)
            self.say("a")
        self.assertEqual([formatEvent(e) for e in events],
                         ["refused a", "refused a (4 more like it since the last such line)", "refused a"])
        self.assertEqual(events[1]["suppressed"], 4)

    def test_level_and_fields_are_kept(self) -> None:
        with capturedLogs() as events:
            self.throttled.warn(self.clock, "k", "closing {session}", session="s1")
        self.assertEqual((events[0]["log_level"], events[0]["session"]), (LogLevel.warn, "s1"))

    def test_each_clock_keeps_its_own_account(self) -> None:
        other = Clock()
        other.advance(1000)
        with capturedLogs() as events:
            self.say("a", 3)
            self.throttled.info(other, "a", "refused {kind}", kind="a")
        self.assertEqual(len(events), 2)


class JsonLinesTests(SynchronousTestCase):
    def event(self, **extra: Any) -> dict[str, Any]:
        event = {"log_format": "closing {session}: {reason}", "log_level": LogLevel.info,
                 "log_namespace": "anonchat.stomp.session", "log_time": 1764000000.25, "session": "ab12",
                 "reason": "bad-destination"}
        event.update(extra)
        return event

    def test_one_object_with_time_level_namespace_message_and_fields(self) -> None:
        line = event_as_json_line(self.event())
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        self.assertEqual(json.loads(line), {
            "time": "2025-11-24T16:00:00.250+00:00", "level": "info", "namespace": "anonchat.stomp.session",
            "message": "closing ab12: bad-destination", "session": "ab12", "reason": "bad-destination",
        })

    def test_a_failure_is_a_string_in_the_same_line(self) -> None:
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        line = event_as_json_line(self.event(log_failure=failure, log_format="flush failed"))
        self.assertEqual(line.count("\n"), 1)
        parsed = json.loads(line)
        self.assertIn("ZeroDivisionError", parsed["failure"])
        self.assertEqual(parsed["message"], "flush failed")

    def test_values_json_cannot_hold_are_written_as_text(self) -> None:
        parsed = json.loads(event_as_json_line(self.event(port=object, size=3, ok=True, nothing=None)))
        self.assertEqual((parsed["port"], parsed["size"], parsed["ok"], parsed["nothing"]),
                         ("<class 'object'>", 3, True, None))

    def test_legacy_log_msg_events_become_their_text(self) -> None:
        from twisted.python import log

        out = io.StringIO()
        with capturedLogs() as events:
            log.msg("Server Shut Down.", system="-")
        json_file_observer(out)(events[0])
        parsed = json.loads(out.getvalue())
        self.assertEqual((parsed["message"], parsed["system"]), ("Server Shut Down.", "-"))
        self.assertNotIn("isError", parsed)


class RefusalLogTests(RoomTestCase):
    """Hostile clients cannot flood the log: each kind of refusal is one line a
    minute, and every one of them is still counted."""

    def test_application_errors_are_logged_once_a_minute_per_code(self) -> None:
        client = Client(self)
        with capturedLogs() as first_minute:
            for _ in range(30):
                client.say(b"not json")  # INVALID_JSON, then RATE_LIMITED once the burst is spent
        self.assertEqual(sum(self.room.refused.values()), 30)
        logged = lines(first_minute, "anonchat.chat.room", "application error")
        self.assertEqual(sorted(line.split()[2] for line in logged), sorted(self.room.refused), logged)
        self.clock.advance(61)
        with capturedLogs() as next_minute:
            client.say(b"not json")
        [line] = lines(next_minute, "anonchat.chat.room", "application error")
        self.assertIn(f"INVALID_JSON for session s0 ({self.room.refused['INVALID_JSON'] - 2} more like it", line)

    def test_server_closes_are_logged_once_a_minute_per_reason(self) -> None:
        with capturedLogs() as events:
            for _ in range(20):
                Client(self).feed(frame("SEND", b"{}", destination="/nowhere"))
        logged = lines(events, "anonchat.stomp.session", "closing STOMP session")
        self.assertEqual(len(logged), 1, logged)
