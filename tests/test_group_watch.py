"""The group watch's look at a real broker: lag per partition and which live member owns each."""

from __future__ import annotations

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from processors.group_watch import look
from processors.service import member_id_of


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
        deadline = time.monotonic() + 60
        while len(consumer.assignment()) < 4:
            assert time.monotonic() < deadline, "the consumer was never assigned the topic's partitions"
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
