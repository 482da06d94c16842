"""Runs INSIDE one instrumentation library's own virtualenv (made by scripts/interop.py).

Instruments the real `openai` SDK with that library, exactly as its README tells an app to,
exports OTLP/HTTP traces and logs to `cutover collect`, makes N calls against `cutover simulate`
(two models, half streamed, rate limits, timeouts, refusals, content capture on), and prints
one JSON line per call with what the simulator returned, as the client saw it: the ground
truth the interop tests compare the rows with. Each call runs in a parent span of its own, so
its trace id ties the truth to the row. Imports only the stdlib, openai and OpenTelemetry:
our own package is not installed here.

    python interop_driver.py LIBRARY --simulator URL --collector URL --calls N
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("gpt-5.4", "gpt-5.5")
TIMEOUT_S = 3.0
# The simulator draws each outcome from (seed, request, nonce): this nonce prefix gives the 40
# calls of tests/test_interop.py every case at least once per sync/stream (API and prose
# refusals, rate limits, timeouts) with only two 3 s timeouts; the test checks the coverage.
NONCE_HEADER = "x-cutover-nonce"
# A system prompt the simulator may serve from its prompt cache (cached input tokens).
SYSTEM = "You are a concise physics tutor. Answer in plain prose, without lists or formulas."
NONCE_PREFIX = "interop-218:"


def setup_otel(collector: str) -> tuple[Any, Any]:
    from opentelemetry import trace
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "interop", "deployment.environment.name": "test"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{collector}/v1/traces")))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{collector}/v1/logs")))
    set_logger_provider(logger_provider)
    try:  # instrumentations that emit through the (older) Events API
        from opentelemetry._events import set_event_logger_provider
        from opentelemetry.sdk._events import EventLoggerProvider

        set_event_logger_provider(EventLoggerProvider(logger_provider))
    except ImportError:
        pass
    return tracer_provider, logger_provider


def instrument(library: str, tracer_provider: Any, collector: str) -> None:
    if library.startswith("openllmetry"):
        os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif library == "openai-v2":
        # event mode: the content travels as OTLP log records (joined by processors/logs_join.py)
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
        os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVENT_ONLY")
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif library == "official":
        os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif library == "openlit":
        import tempfile

        import openlit

        # openlit fetches its price list from GitHub unless given one: the tests use no internet,
        # and its own cost attribute is not what we bill by
        prices = Path(tempfile.mkdtemp()) / "openlit-prices.json"
        prices.write_text('{"chat": {}}')
        openlit.init(
            otlp_endpoint=collector, capture_message_content=True, disable_metrics=True, pricing_json=str(prices)
        )
    elif library == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    elif library == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, service_name="interop")
        logfire.instrument_openai()
        # logfire installs its own tracer provider; it exports to our collector through the OTel env vars
    else:
        raise SystemExit(f"unknown library {library!r}")


def call(client: Any, index: int) -> dict[str, Any]:
    model = MODELS[index % 2]
    stream = index % 4 >= 2
    prompt = f"Question {index}: explain briefly why the sky is blue, take {index % 7 + 1} sentences."
    truth: dict[str, Any] = {"index": index, "model": model, "stream": stream, "prompt": prompt}
    headers = {NONCE_HEADER: f"{NONCE_PREFIX}{index}"}
    try:
        if stream:
            chunks = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            )
            text, finish, usage, refusal = [], "", None, ""
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    text.append(choice.delta.content or "")
                    refusal += getattr(choice.delta, "refusal", None) or ""
                    finish = choice.finish_reason or finish
            truth.update(text="".join(text), finish_reason=finish, refusal=refusal)
        else:
            response = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                extra_headers=headers,
            )
            choice = response.choices[0]
            usage = response.usage
            truth.update(
                text=choice.message.content or "",
                finish_reason=choice.finish_reason,
                refusal=getattr(choice.message, "refusal", None) or "",
            )
        if usage is not None:
            truth.update(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cached_tokens=getattr(usage.prompt_tokens_details, "cached_tokens", 0) or 0,
                reasoning_tokens=getattr(usage.completion_tokens_details, "reasoning_tokens", 0) or 0,
            )
        truth["error_type"] = ""
    except Exception as error:  # the truth: which error the client saw
        truth["error_type"] = type(error).__name__
    return truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("library")
    parser.add_argument("--simulator", required=True)
    parser.add_argument("--collector", required=True)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", args.collector)
    os.environ.setdefault("OPENAI_API_KEY", "sk-interop")
    tracer_provider, logger_provider = setup_otel(args.collector)
    instrument(args.library, tracer_provider, args.collector)

    import openai
    from opentelemetry import trace

    client = openai.OpenAI(base_url=args.simulator, timeout=TIMEOUT_S, max_retries=0)
    tracer = trace.get_tracer("interop-driver")
    for index in range(args.calls):
        with tracer.start_as_current_span("interop call") as parent:
            truth = call(client, index)
            truth["trace_id"] = format(parent.get_span_context().trace_id, "032x")
        print(json.dumps(truth), flush=True)
    for provider in (trace.get_tracer_provider(), tracer_provider, logger_provider):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            flush()
    time.sleep(0.5)
    for provider in (trace.get_tracer_provider(), tracer_provider, logger_provider):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
    print(f"done {args.calls} calls with {args.library}", file=sys.stderr)


if __name__ == "__main__":
    main()
