"""The group watch's look at a real broker (lag per partition and which live member owns each), and
what a processor makes of it beside a live owner."""

from __future__ import annotations

import threading
import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata, TopicPartition

from processors import service as service_module
from processors.group_watch import look
from processors.service import ProcessorService, member_id_of
from tests.processor_workload import make_calls, messages
from tests.test_processor_service import settings_for


def test_a_look_names_each_partitions_owner_and_its_lag(kafka_bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for partition, count in enumerate((3, 0, 5, 1)):
        for _ in range(count):
            producer.send(topic, b"x", partition=partition)
    producer.flush()
    producer.close()
    group = f"g_{topic}"
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        deadline = time.monotonic() + 120
        joined = time.monotonic()
        while len(consumer.assignment()) < 4:
            assert time.monotonic() < deadline, "the consumer was never assigned the topic's partitions"
            # kafka-python 3.0.12 can lose an assignment under load: rejoin, as the processor's group watch does.
            if time.monotonic() - joined > 15:
                consumer.unsubscribe()
                consumer.subscribe([topic])
                joined = time.monotonic()
            consumer.poll(timeout_ms=200)
        consumer.commit({TopicPartition(topic, 2): OffsetAndMetadata(4, "", -1)})
        me = member_id_of(consumer)()
        assert me
        view = look(admin, topic, group)
        assert view.state == "Stable"
        assert view.owners == dict.fromkeys(range(4), me)
        assert view.lag == {0: 3, 1: 0, 2: 1, 3: 1}
        assert view.orphaned("another member") == [] and not view.lost_to("another member")
        assert view.orphaned(me) == [0, 2, 3] and view.lost_to(me)  # what we would hold, were our assignment lost
    finally:
        consumer.close()
        admin.close()


def test_a_member_owning_nothing_beside_a_live_owner_never_rejoins(
    kafka_bootstrap: str, ch_client, ch_database
) -> None:
    # One partition, two members: one owns it, the other nothing, while calls keep arriving (the
    # partition lags between commits). The idle member must leave the group alone: each rejoin
    # is a rebalance that takes the partition from the live owner mid-batch.
    topic = f"t1_{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    stall_timeout_s = 1.0
    members = [
        ProcessorService(
            settings_for(kafka_bootstrap, topic, ch_database, f"g_{topic}", stall_timeout_s=stall_timeout_s),
            client=ch_client,
        )
        for _ in range(2)
    ]
    calls = make_calls(1200, seed=23)
    items = list(messages(calls, per_message=10))

    def send_slowly() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=16_777_216)
        for key, value in items:
            producer.send(topic, key=key, value=value)
            producer.flush()
            time.sleep(0.15)
        producer.close()

    sending = threading.Thread(target=send_slowly, name="test-sender")
    for member in members:
        member.start()
    try:
        deadline = time.monotonic() + 180
        while sorted(len(m.partitions) for m in members) != [0, 1]:
            assert time.monotonic() < deadline, [m.partitions for m in members]
            time.sleep(0.1)
        # Counted from here: a rejoin while the group first forms may be kafka-python's stall, rightly undone.
        rejoins = [m.stats.rejoins for m in members]
        sending.start()
        deadline = time.monotonic() + 180
        # Long enough for several group looks and stall timeouts while the idle member owns nothing.
        watched_until = time.monotonic() + 4 * service_module.LAG_INTERVAL_S + stall_timeout_s
        while time.monotonic() < watched_until or sum(m.stats.messages for m in members) < len(items):
            assert time.monotonic() < deadline, [m.stats.as_dict() for m in members]
            assert all(m.failure is None for m in members)
            time.sleep(0.2)
    finally:
        if sending.ident is not None:
            sending.join()
        for member in members:
            member.stop()
    assert [m.stats.rejoins for m in members] == rejoins
    assert ch_client.command(f"SELECT count() FROM {ch_database}.llm_calls FINAL") == len(calls)
