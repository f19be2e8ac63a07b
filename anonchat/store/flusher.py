"""The flusher: moves messages from the buffer to the archive in batches.

A batch is acknowledged in the buffer only after the archive stored it, so a
crash or an outage between the two means the batch is stored again later,
which the archive's idempotent insert makes harmless: at least once into an
archive that keeps exactly one row per id. A failure never stops the loop;
it is logged once when an outage starts and once when it ends, not per tick.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from anonchat.chat.message import ChatMessage, MessageType
from anonchat.chat.ports import ArchiveUnavailable, BufferUnavailable, IMessageArchive, IMessageBuffer

EXPECTED_FAILURES = (ArchiveUnavailable, BufferUnavailable)


class Flusher:
    """Between an IMessageBuffer and an IMessageArchive.

    Every ``interval`` seconds, claim batches of up to ``batch_size``,
    store them, then acknowledge them, until the buffer has no full batch.

    Counters for metrics: ``flushed_total`` (messages archived and
    acknowledged), ``last_batch_size`` and ``last_lag_seconds`` (of the last
    claim: 0 once a claim comes back empty, i.e. caught up), and
    ``consecutive_failures`` (flushes failed in a row; 0 when healthy).
    """

    log = Logger()

    def __init__(
        self,
        buffer: IMessageBuffer,
        archive: IMessageArchive,
        clock: Any,
        *,
        interval: float = 1.0,
        batch_size: int = 500,
        hidden: Callable[[Sequence[str]], Deferred[set[str]]] | None = None,
    ) -> None:
        if interval <= 0 or batch_size <= 0:
            raise ValueError("interval and batch_size must be positive")
        self._buffer = buffer
        self._archive = archive
        #: Which of these ids a moderator deleted (None: no moderation).
        self._hidden = hidden
        self._clock = clock
        self.interval = interval
        self.batch_size = batch_size
        self.flushed_total = 0
        self.last_batch_size = 0
        self.last_lag_seconds = 0.0
        self.consecutive_failures = 0
        self._outage_started: float | None = None
        self._lock = DeferredLock()
        self._loop: LoopingCall | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    def start(self) -> None:
        """Flush now and then every ``interval`` seconds until ``stop()``."""
        if self.running:
            return
        loop = self._loop = LoopingCall(self._tick)
        loop.clock = self._clock
        loop.start(self.interval, now=True).addErrback(self._loop_died)

    def stop(self) -> Deferred[None]:
        """Stop the loop, then drain: flush until a claim comes back empty
        (or the buffer or archive fails); fires when done."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return Deferred.fromCoroutine(self._drain())

    def nudge(self) -> None:
        """A full batch is waiting: flush now rather than at the next tick
        (keeps the send-to-row lag near one batch's write time under load)."""
        if self.running and not self._lock.locked:
            self._tick()

    def flush_once(self) -> Deferred[int]:
        """Claim, store and acknowledge batches until a claim returns fewer
        than ``batch_size``; fires with how many were archived, or fails with
        the buffer's or archive's error. Calls never overlap."""
        return self._lock.run(lambda: Deferred.fromCoroutine(self._flush()))

    async def _flush(self) -> int:
        archived = 0
        try:
            while True:
                batch = await self._buffer.claim_batch(self.batch_size)
                if not batch:
                    self.last_batch_size = 0
                    self.last_lag_seconds = 0.0
                    break
                if self._hidden is None:
                    await self._archive.store(batch)
                else:
                    await self._store_without_deleted(batch)
                await self._buffer.acknowledge([message.id for message in batch])
                archived += len(batch)
                self.flushed_total += len(batch)
                self.last_batch_size = len(batch)
                oldest = min(message.created_ms for message in batch) / 1000.0
                self.last_lag_seconds = max(0.0, self._clock.seconds() - oldest)
                if len(batch) < self.batch_size:
                    break
        except BaseException:
            self._failed(Failure())
            raise
        self._succeeded()
        return archived

    async def _store_without_deleted(self, batch: list[ChatMessage]) -> None:
        """A deletion must win the race with the flusher: a message deleted
        before its batch was claimed is stored erased; the target of a DELETE
        in the batch is erased (it may be stored already); and a deletion
        marked while this batch was being written is erased after it (its
        DELETE may be archived by another node before this batch)."""
        assert self._hidden is not None
        chats = [m.id for m in batch if m.type is MessageType.CHAT]
        deleted = await self._hidden(chats) if chats else set()
        if deleted:
            batch = [attrs.evolve(m, content="") if m.id in deleted else m for m in batch]
        await self._archive.store(batch)
        erase = [m.content for m in batch if m.type is MessageType.DELETE]
        if chats:
            erase += [i for i in await self._hidden(chats) if i not in deleted]
        if erase:
            await self._archive.erase(erase)

    def _tick(self) -> Deferred[None]:
        # the failure is counted and logged by _flush; a LoopingCall whose
        # call fails stops for good, so nothing may reach it
        return self.flush_once().addCallbacks(lambda _: None, lambda _: None)

    async def _drain(self) -> None:
        while True:
            try:
                archived = await self.flush_once()
            except Exception:
                backlog = await self._backlog()
                self.log.warn("Flusher stopped with {backlog} messages not archived", backlog=backlog)
                return
            if not archived:
                return

    async def _backlog(self) -> int | str:
        try:
            return await self._buffer.backlog()
        except Exception:
            return "unknown"

    def _failed(self, failure: Failure) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures > 1:
            return
        self._outage_started = self._clock.seconds()
        error_type = type(failure.value).__name__
        if failure.check(*EXPECTED_FAILURES):
            self.log.warn(
                "Flusher cannot archive ({error_type}: {error}); retrying every {interval}s",
                error_type=error_type,
                error=str(failure.value),
                interval=self.interval,
            )
        else:
            self.log.failure(
                "Flusher failed unexpectedly ({error_type}); retrying every {interval}s",
                failure,
                error_type=error_type,
                interval=self.interval,
            )

    def _succeeded(self) -> None:
        if self.consecutive_failures:
            started = self._outage_started if self._outage_started is not None else self._clock.seconds()
            self.log.info(
                "Flusher archiving again after {failures} failed attempts in {seconds:.1f}s",
                failures=self.consecutive_failures,
                seconds=self._clock.seconds() - started,
            )
        self.consecutive_failures = 0
        self._outage_started = None

    def _loop_died(self, failure: Failure) -> None:
        self.log.failure("Flusher loop stopped", failure)
