"""faust-streaming's Kafka consumer with a commit that never passes unfinished work.

faust-streaming (0.15.3, the version pinned) commits, per partition, the end of the first run of
consecutive acked offsets (`Consumer._new_offset`). Its guard against a hole at the head of that run
is off by one and sometimes absent (faust-streaming issue #606):
- it bails only when `min(acked) - committed > 1`, but `committed` is the offset to read next, so
  with offset 37 committed and 38, 39 acked it commits 40: offset 37, still being handled, is lost if
  the worker dies;
- it is skipped when nothing was committed yet (`committed` None) or the commit is 0: a slow first
  event is passed over by any later ack.
With manual acks (`stream.noack()` + `stream.ack(event)` once an event's results are durable) this
is exactly the case that matters: an event held back is the one the commit must not pass.

`GuardedConsumer._new_offset` starts the run where the partition's next unfinished offset is: the
committed offset, or before any commit the first offset delivered since the partition was assigned.
It also never commits past a delivered message that is not acked. `GuardedConsumer.seek_to_committed`
makes Faust's "seek back to the commit" rewind partitions that have no commit yet. (Faust's streams mark messages as
tracked inline, bypassing `Consumer.track_message`, so the first offset comes from the fetcher's
read offsets instead.) Offsets that were never delivered
(Faust's gaps: compaction, transaction markers) still count as done, as upstream.

Use it through the transport scheme registered here: `faust.App(..., broker="iotlm://host:port")`.
"""

from __future__ import annotations

from faust.transport import drivers
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP

SCHEME = "iotlm"


class _ReadOffsets(dict):
    """Faust's per-partition "last offset read", also remembering the first offset read since the
    partition was assigned (Faust pops a partition's entry when it is revoked)."""

    def __init__(self) -> None:
        super().__init__()
        self.first: dict[TP, int] = {}

    def __missing__(self, tp: TP) -> None:
        return None

    def __setitem__(self, tp: TP, offset: int) -> None:
        self.first.setdefault(tp, offset)
        super().__setitem__(tp, offset)

    def pop(self, tp: TP, *default):
        self.first.pop(tp, None)
        return super().pop(tp, *default)


class GuardedConsumer(Consumer):
    """The aiokafka-driver consumer of faust-streaming with the #606 commit guard."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _ReadOffsets()

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        self._fold_gaps(tp, acked)
        acked.sort()
        start = self._committed_offset[tp]
        if start is None:
            start = self._read_offset.first.get(tp)
        if start is None or acked[0] > start:
            return None  # the next offset to commit past is not done: hold
        end = acked[0]
        count = 0
        for offset in acked:
            if offset > end:
                break
            end, count = offset + 1, count + 1
        unfinished = [m.offset for m in self._unacked_messages if m.tp == tp and m.offset < end]
        if unfinished:
            end = min(unfinished)
            count = sum(1 for o in acked[:count] if o < end)
        done = acked[:count]
        del acked[:count]
        self._acked_index[tp].difference_update(done)
        return end if end > start else None

    async def seek_to_committed(self) -> dict:
        """Faust re-reads from the commit whatever it dropped (records fetched during a rebalance, or
        for a partition paused then): `perform_seek` after each recovery and whenever a fetch comes
        while the flow is stopped. aiokafka seeks only partitions whose committed offset is above 0,
        so a partition nothing was committed on yet stays past the dropped records, and they are
        never handled (a worker restarted after a kill -9 before its first commit read nothing of
        its partitions). Seek those to their first offset, as the `earliest` reset policy means."""
        committed = await super().seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            changelogs = self.app.tables.changelog_topics  # table recovery positions those itself
            never = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
            if never:
                await self._thread.seek_to_beginning(*never)
        return committed

    def _fold_gaps(self, tp: TP, acked: list[int]) -> None:
        """Offsets never delivered below the highest acked one count as acked (as upstream does)."""
        gaps = self._gap[tp]
        if not gaps:
            return
        top = max(acked)
        for interval in sorted(gaps.overlap(0, top), key=lambda i: i.begin):
            acked.extend(o for o in range(interval.begin, interval.end) if o not in self._acked_index[tp])
        gaps.chop(0, top + 1)


class GuardedTransport(Transport):
    Consumer = GuardedConsumer


drivers.TRANSPORTS[SCHEME] = f"{__name__}:GuardedTransport"  # mode resolves transports by import path
