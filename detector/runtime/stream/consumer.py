"""The consumer thread: polling, prefetch with back-pressure, coalescing, and offset commits.

Kafka clients are not thread-safe, so one thread owns the ``KafkaSource`` (``source``: kafka-python or
librdkafka): it opens, polls, pauses/resumes, commits offsets and closes it, and nothing else touches it
(the rebalance listener runs inside its ``poll``). Each poll goes to the decoder at once (a worker process
when ``decode_workers`` is set) and is queued, tagged with the assignment *epoch* and a high-water
snapshot, for the processing thread, which takes it with ``next_batch`` (queued polls of one epoch
coalesce into one batch). Offset commits asked for by the processing thread run between polls.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from detector.runtime.stream.decoding import Decoder, Poll
from detector.runtime.stream.faults import InputTopicWatch, OffsetsOutOfRange, SourceUnavailable
from detector.runtime.stream.settings import StreamSettings
from detector.runtime.stream.source import KafkaSource, Listener

log = logging.getLogger("detector.stream")

#: While the prefetch queue is full the consumer thread still polls (all partitions paused) this often.
KEEPALIVE_S = 1.0


@dataclass
class Batch:
    """Polled records (one poll, or several coalesced), handed from the consumer thread to the
    processing thread; no polls: an idle marker (the merge's timing still moves)."""

    epoch: int
    polls: list[Poll]
    #: High-water offset per assigned partition, read on the consumer thread right after the poll.
    highwater: dict[int, int | None]

    @property
    def records(self) -> int:
        return sum(len(p.offs) for p in self.polls)


def make_source(settings: StreamSettings, owns_partitions: Callable[[], bool]) -> KafkaSource:
    """The ``KafkaSource`` that ``DETECTOR_STREAM_SOURCE`` names (``owns_partitions``: whether this
    replica holds the partitions now, for kafka-python's sticky single-owner assignor)."""
    if settings.source == "confluent":
        from detector.runtime.stream.confluent import ConfluentSource

        return ConfluentSource(settings)
    from detector.runtime.stream.kafkapython import KafkaPythonSource

    return KafkaPythonSource(settings, owns_partitions)


class ConsumerThread:
    """Owns the ``KafkaSource`` on its own thread; hands decoded polls to the processing thread."""

    def __init__(
        self,
        settings: StreamSettings,
        decoder: Callable[[], Decoder | None],
        epoch: Callable[[], int],
        source: KafkaSource,
        listener: Listener,
        watch: InputTopicWatch | None = None,
    ) -> None:
        self.s = settings
        #: Notices a recreated input topic and samples the broker connection (``faults``).
        self.watch = watch
        self._decoder = decoder
        self._epoch = epoch
        self.source = source
        self._listener = listener
        self.queue: queue.Queue[Batch] = queue.Queue()
        #: A batch taken from the queue while coalescing but left for the next turn (another epoch, an
        #: idle marker, or polls still being decoded).
        self.held: Batch | None = None
        self._taken = threading.Event()
        self._commands: queue.Queue[tuple[int, dict[int, int]]] = queue.Queue()
        self._closing = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ processing side
    def start(self) -> None:
        """Start the thread (it creates and subscribes the consumer)."""
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name="detector-consumer", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Ask the thread to commit what is asked, close the consumer (a last revocation) and stop."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def next_batch(self, timeout: float) -> Batch | None:
        """The next batch (a held one first), coalesced; None when nothing came within ``timeout``."""
        try:
            if self.held is not None:
                first, self.held = self.held, None
            else:
                first = self.queue.get(timeout=timeout)
            batch = self.coalesce(first)
            self._taken.set()
            return batch
        except queue.Empty:
            return None

    def coalesce(self, item: Batch) -> Batch:
        """``item`` plus the decoded batches queued behind it from the same epoch, as one batch (fewer,
        larger engine calls), up to ``prefetch_batches`` polls' worth of records. Polls stay in order;
        the high-water marks are the newest poll's. A batch from another epoch, or one whose decoding
        is not finished, waits for the next turn."""
        if not item.polls:
            return item
        polls = list(item.polls)
        count = item.records
        highwater = item.highwater
        cap = self.s.max_poll_records * self.s.prefetch_batches
        while count < cap and self.held is None and self.queue.qsize():
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt.epoch != item.epoch or not nxt.polls or not all(p.ready for p in nxt.polls):
                # handled on its own next turn (stale, an idle marker, or still being decoded: the
                # engine starts on what is decoded while the workers go on)
                self.held = nxt
                break
            polls += nxt.polls
            count += nxt.records
            highwater = nxt.highwater
        return Batch(item.epoch, polls, highwater)

    def discard_queued(self) -> int:
        """Drop every queued batch (a rebalance: they are read again); return how many."""
        dropped = 0
        while True:
            try:
                stale = self.queue.get_nowait()
            except queue.Empty:
                return dropped
            for poll in stale.polls:
                poll.cancel()  # no worker time for records that will be read again
            dropped += 1
            self._taken.set()

    def request_commit(self, epoch: int, offsets: dict[int, int]) -> None:
        """Commit ``offsets`` to the group before the next poll (dropped if the epoch moved on)."""
        self._commands.put((epoch, offsets))

    # ------------------------------------------------------------------------ inside the listener
    def commit_now(self, offsets: dict[int, int]) -> None:
        """Commit asynchronously right away: only from the rebalance listener (the thread is in poll)."""
        try:
            self.source.commit(offsets, sync=False)
        except Exception as exc:  # the checkpoint is authoritative; the group offset is for visibility
            log.warning("offset commit failed", extra={"error": type(exc).__name__})

    def seek(self, partition: int, offset: int | None) -> None:
        """Position a partition (None: from the beginning). Only from the rebalance listener."""
        self.source.seek(partition, offset)

    # ------------------------------------------------------------------------------- the thread
    def _run(self) -> None:
        """The consumer thread: the only thread that calls the ``KafkaSource``."""
        source = self.source
        opened = False
        try:
            source.open(self._listener)
            opened = True
            last_poll = last_sample = 0.0
            paused = False
            while not self._closing.is_set():
                self._run_commands(sync=False)
                if self.watch is not None and time.monotonic() - last_sample >= KEEPALIVE_S:
                    last_sample = time.monotonic()
                    self.watch.sample(source)
                if self.queue.qsize() >= self.s.prefetch_batches:
                    # back-pressure: wait for the processing thread; poll now and then with every
                    # partition paused so that the group (and a pending rebalance) is served
                    self._taken.wait(0.05)
                    self._taken.clear()
                    if time.monotonic() - last_poll < KEEPALIVE_S:
                        continue
                    source.pause()
                    paused = True
                    records = source.poll(0, self.s.max_poll_records)
                else:
                    if paused:
                        source.resume()
                        paused = False
                    try:
                        records = source.poll(self.s.poll_timeout_ms, self.s.max_poll_records)
                    except OffsetsOutOfRange as exc:
                        if self.watch is None:
                            raise
                        self.watch.out_of_range(source, exc.positions)
                        continue
                    except SourceUnavailable as exc:  # the broker is down: retry
                        if self.watch is not None:
                            self.watch.down(str(exc))
                        time.sleep(KEEPALIVE_S / 2)
                        continue
                last_poll = time.monotonic()
                # read after the poll: a rebalance inside it bumped the epoch, and these records
                # were fetched from the positions its assignment set
                epoch = self._epoch()
                if self.watch is not None and self.watch.after_poll(source, source.assignment()):
                    continue  # the topic was recreated: these records are read again after the reset
                if len(records) or self.queue.empty():  # empty batches only while idle (merge timing)
                    high = source.highwaters()
                    decoder = self._decoder()
                    assert decoder is not None
                    polls = [decoder.start(records)] if len(records) else []
                    self.queue.put(Batch(epoch, polls, high))
        except BaseException as exc:
            self.error = exc
            log.exception("consumer thread failed")
        finally:
            try:
                if opened:
                    self._run_commands(sync=True)
            finally:
                source.close()  # revokes: the listener may commit once more

    def _run_commands(self, *, sync: bool) -> None:
        """Offset commits asked for by the processing thread (for lag dashboards; see the daemon doc)."""
        while True:
            try:
                epoch, offsets = self._commands.get_nowait()
            except queue.Empty:
                return
            if epoch != self._epoch():
                continue  # a rebalance since: these partitions may belong to someone else now
            try:
                self.source.commit(offsets, sync=sync)
            except Exception as exc:  # the checkpoint is authoritative; the group offset is for visibility
                log.warning("offset commit failed", extra={"error": type(exc).__name__})
