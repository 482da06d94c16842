"""With the broker stopped: the application's calls still succeed, drops are counted, collect answers 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer

import openai
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from collectors.instrument import instrument
from collectors.settings import CollectorSettings
from cutover.local_kafka import LocalBroker, free_port
from tests.conftest import JAR_CACHE
from tests.test_collectors_instrument import ANSWER, _OpenAIFixture
from tests.test_collectors_receiver import make_spans, post, start_collect, stop


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_broker_down_app_unaffected_drops_counted_collect_503(tmp_path, cutover_env):
    broker = LocalBroker(
        state=tmp_path / "kafka", libs=JAR_CACHE, port=free_port(), controller_port=free_port(), partitions=4
    )
    broker.start()
    broker.create_topics(["spans"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAIFixture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(
        cutover_env,
        CUTOVER_KAFKA_BOOTSTRAP=broker.bootstrap,
        CUTOVER_SPANS_TOPIC="spans",
        CUTOVER_COLLECT_ACK_TIMEOUT_S="2",
    )
    collect, url = start_collect(env, tmp_path / "collect.log")
    settings = CollectorSettings(kafka_bootstrap=broker.bootstrap, spans_topic="spans", exporter_timeout_s=3)
    inst = instrument(service_name="outage", settings=settings)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="test", max_retries=0)
    body = encode_spans(make_spans()).SerializeToString()

    def ask() -> str | None:
        reply = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        answer: str | None = reply.choices[0].message.content
        return answer

    try:
        assert ask() == ANSWER
        inst.force_flush()
        assert wait_for(lambda: inst.exporter.sent == 1, 30)
        assert post(url, body)[0] == 200

        broker.stop()
        assert [ask() for _ in range(5)] == [ANSWER] * 5  # the application never notices
        inst.force_flush()
        assert wait_for(lambda: inst.dropped == 5, 60), f"dropped {inst.dropped}"
        assert inst.exporter.sent == 1

        status, payload, headers = post(url, body)
        assert status == 503 and headers["retry-after"] == "2"
        assert "Kafka" in Status.FromString(payload).message
    finally:
        inst.shutdown()
        stop(collect)
        server.shutdown()
        broker.stop()
    assert inst.dropped == 5
