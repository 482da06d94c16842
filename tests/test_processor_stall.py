"""kafka-python's silent stall, forced: the coordinator gives us partitions, the consumer never applies them.

Under CPU load kafka-python 3.0.12 can apply an empty first assignment and lose the real one
that arrives while a short poll times out; the member then heartbeats forever owning nothing
while the coordinator counts its partitions as consumed. Here the first assignment is dropped
on purpose, so the state is reached every run; the processor must notice (group lag with no
live consumer), rejoin within its bound, log it, and then process everything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from kafka import KafkaConsumer

from processors import service as service_module
from processors.service import ProcessorService
from tests.processor_workload import make_calls, messages, produce
from tests.test_processor_service import settings_for

# An hour: the forced stall is a lost assignment in a stable group, which must not wait for it.
STALL_TIMEOUT_S = 3600.0
REAL_CONSUMER = service_module.kafka_consumer


def first_assignment_lost(settings: Any) -> KafkaConsumer:
    consumer = REAL_CONSUMER(settings)
    coordinator = consumer._coordinator
    original = coordinator._on_join_complete_async
    lost = False

    async def lose_the_first(*args: Any, **kwargs: Any) -> None:
        nonlocal lost
        await original(*args, **kwargs)
        # The first join may hand out nothing on its own (the topic's metadata not yet known); the
        # first real assignment is the one to lose, so the stall is reached every run.
        if not lost and consumer._subscription.assigned_partitions():
            lost = True  # what the stalled member holds: nothing, while the group says it holds everything
            consumer._subscription.assign_from_subscribed([])

    coordinator._on_join_complete_async = lose_the_first
    return consumer


def test_a_member_left_with_no_partitions_rejoins_and_processes_everything(
    kafka_bootstrap, topic, ch_client, ch_database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(service_module, "kafka_consumer", first_assignment_lost)
    calls = make_calls(400, seed=17)
    items = list(messages(calls, per_message=20))
    produce(kafka_bootstrap, topic, items)
    caplog.set_level(logging.INFO, "cutover.processor")
    settings = settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", stall_timeout_s=STALL_TIMEOUT_S)
    service = ProcessorService(settings, client=ch_client)
    started = time.time()
    service.start()
    try:
        deadline = time.monotonic() + 120
        while service.stats.messages < len(items):
            assert time.monotonic() < deadline and service.failure is None, service.stats.as_dict()
            time.sleep(0.2)
    finally:
        service.stop()
    assert service.stats.rejoins >= 1
    stalled = [r for r in caplog.records if "own no partitions" in r.getMessage()]
    assert stalled and "the stable group naming us their owner; rejoining the group" in stalled[0].getMessage()
    # The bound: the stall is first seen at a group look (every LAG_INTERVAL_S, the admin client's first
    # look may take a few seconds) and acted on at the next; generous on a busy machine.
    assert stalled[0].created - started < 3 * service_module.LAG_INTERVAL_S + 30
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(calls)
