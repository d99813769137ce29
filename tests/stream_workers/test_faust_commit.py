"""faust-streaming #606: the stock consumer commits past an event still being handled; ours does not.
And its seek back to the commit, after records were dropped, rewinds no partition nothing was committed on.

Against the real broker: 20 records, every one acked but offset 3 (a slow event); the worker then
dies and a new one starts from the commit. The stock consumer has committed 20 and offset 3 is never
seen again; the guarded one commits 3 and the restarted worker gets offset 3 back.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from iotlm.credentials import faust_credentials, kafka_client_kwargs

pytestmark = pytest.mark.services
SLOW = 3


def make_topic(settings, n: int = 20) -> str:
    from kafka import KafkaProducer

    from deploy.topics import admin_client
    from kafka.admin import NewTopic

    topic = f"test.faust.{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, **kafka_client_kwargs(settings, "admin"))
    for i in range(n):
        producer.send(topic, key=b"dev", value=b"%d" % i)
    producer.flush()
    producer.close()
    return topic


def consume(settings, topic: str, group: str, scheme: str, ack_all: bool, wait_for: int) -> list[int]:
    """The offsets a Faust agent is handed (it acks all but SLOW unless `ack_all`)."""
    import faust

    import stream_workers.faust_consumer  # noqa: F401  registers the "iotlm" transport

    async def main():
        app = faust.App(group, broker=f"{scheme}://{settings.kafka_bootstrap}", web_enabled=False,
                        broker_credentials=faust_credentials(settings, "admin"),
                        datadir=str(settings.state_dir / "{conf.name}-data"),
                        topic_partitions=1, consumer_auto_offset_reset="earliest", store="memory://",
                        broker_commit_interval=0.2, topic_allow_declare=False)
        source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        seen: list[int] = []

        @app.agent(source, concurrency=1)
        async def agent(stream):
            async for event in stream.noack().events():
                seen.append(event.message.offset)
                if ack_all or event.message.offset != SLOW:
                    await stream.ack(event)

        await app.start()
        deadline = time.monotonic() + 60
        while len(seen) < wait_for and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # several commit intervals: whatever it commits, it has committed
        await app.stop()
        return seen

    return asyncio.run(main())


def committed_offset(settings, group: str, topic: str) -> int | None:
    from kafka import TopicPartition

    from deploy.topics import admin_client

    admin = admin_client(settings)
    try:
        offsets = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    meta = offsets.get(TopicPartition(topic, 0))
    return meta.offset if meta is not None else None


@pytest.mark.parametrize("scheme, loses_it", [("kafka", True), ("iotlm", False)], ids=["stock", "guarded"])
def test_a_slow_event_at_the_head_survives_a_crash_only_with_the_guard(settings, stack, scheme, loses_it):
    topic = make_topic(settings)
    group = f"test-faust-{uuid.uuid4().hex[:8]}"
    first = consume(settings, topic, group, scheme, ack_all=False, wait_for=20)
    assert sorted(first) == list(range(20))
    commit = committed_offset(settings, group, topic)
    if loses_it:  # faust-streaming #606 as shipped: if this fails, upstream fixed it and the guard can go
        assert commit == 20
        return
    assert commit == SLOW
    again = consume(settings, topic, group, scheme, ack_all=True, wait_for=20 - SLOW)
    assert again[0] == SLOW and sorted(again) == list(range(SLOW, 20))
    assert committed_offset(settings, group, topic) == 20


@pytest.mark.parametrize("scheme, rereads", [("kafka", False), ("iotlm", True)], ids=["stock", "guarded"])
def test_the_seek_back_to_the_commit_rewinds_a_partition_with_no_commit_yet(settings, stack, scheme, rereads):
    """What Faust does after it dropped fetched records (a rebalance, a paused partition): seek back
    to the commit and read them again. With nothing committed, stock leaves the fetcher where it is."""
    import faust

    import stream_workers.faust_consumer  # noqa: F401  registers the "iotlm" transport

    topic, group, n = make_topic(settings, 10), f"test-faust-{uuid.uuid4().hex[:8]}", 10

    async def main():
        app = faust.App(group, broker=f"{scheme}://{settings.kafka_bootstrap}", web_enabled=False,
                        broker_credentials=faust_credentials(settings, "admin"),
                        datadir=str(settings.state_dir / "{conf.name}-data"),
                        topic_partitions=1, consumer_auto_offset_reset="earliest", store="memory://",
                        topic_allow_declare=False, stream_wait_empty=False)  # stop without waiting for acks
        source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        seen: list[int] = []

        @app.agent(source, concurrency=1)
        async def agent(stream):
            async for event in stream.noack().events():  # never acked: nothing is committed
                seen.append(event.message.offset)

        async def wait_for(count: int, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while len(seen) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

        await app.start()
        try:
            await wait_for(n, 60)
            first = list(seen)
            await app.consumer.perform_seek()
            await wait_for(2 * n, 10)
        finally:
            await app.stop()
        return first, seen

    first, seen = asyncio.run(main())
    assert first == list(range(n))

    if rereads:
        assert seen == list(range(n)) * 2
    else:  # if this fails, upstream seeks uncommitted partitions too and the override can go
        assert seen == list(range(n))


def consumer_state(committed, acked, first_read=None, unacked=()):
    """A GuardedConsumer with just the bookkeeping `_new_offset` reads (no app, no broker)."""
    from collections import defaultdict, namedtuple

    from intervaltree import IntervalTree

    from faust.types import TP
    from stream_workers.faust_consumer import GuardedConsumer, _ReadOffsets

    tp = TP("frames", 0)
    consumer = object.__new__(GuardedConsumer)
    consumer._acked = defaultdict(list, {tp: list(acked)})
    consumer._acked_index = defaultdict(set, {tp: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None, {tp: committed})
    consumer._read_offset = _ReadOffsets()
    if first_read is not None:
        consumer._read_offset[tp] = first_read
    message = namedtuple("Message", "tp offset")
    consumer._unacked_messages = {message(tp, o) for o in unacked}
    return consumer, tp


@pytest.mark.parametrize("committed, acked, first_read, unacked, stock, guarded", [
    (37, [38, 39], None, [37], 40, None),  # the off-by-one: 37 is still being handled
    (None, [1, 2], 0, [0], 3, None),  # nothing committed yet: no guard at all upstream
    (0, [1, 2], 0, [0], 3, None),  # a commit of 0 counts as none upstream
    (37, [37, 38, 40], None, [39], 39, 39),  # a plain hole: both stop before it
    (None, [0, 1, 2], 0, [], 3, 3),
])
def test_the_commit_starts_at_the_next_unfinished_offset(committed, acked, first_read, unacked, stock, guarded):
    from faust.transport.consumer import Consumer

    consumer, tp = consumer_state(committed, acked, first_read, unacked)
    assert Consumer._new_offset(consumer, tp) == stock
    consumer, tp = consumer_state(committed, acked, first_read, unacked)
    assert consumer._new_offset(tp) == guarded
