"""Span attribute names: the contract between collectors and processors on the Kafka topic.

Messages on `CUTOVER_SPANS_TOPIC` are OTLP protobuf `ExportTraceServiceRequest`s keyed by
trace id (what the OpenTelemetry Collector's kafkaexporter writes with `otlp_proto` and
`partition_traces_by_id`). GenAI attributes follow the OpenTelemetry GenAI semantic
conventions as recorded by `opentelemetry-instrumentation-genai-openai`; the `cutover.*`
ones are added by collectors (`span_processor`: labels and shadow pair; `response_probe`:
refusal and the client timeout read from the call) and are all optional on the wire.
"""

from __future__ import annotations

# OpenTelemetry GenAI semantic conventions (and general ones) we read.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"  # seconds, streams only
INPUT_MESSAGES = "gen_ai.input.messages"  # JSON, only with content capture on
OUTPUT_MESSAGES = "gen_ai.output.messages"  # JSON, only with content capture on
ERROR_TYPE = "error.type"
SERVICE_NAME = "service.name"  # resource attribute
ENVIRONMENT = "deployment.environment.name"  # resource attribute

# Ours, added by collectors.
REFUSAL = "cutover.refusal"  # bool: the API returned message.refusal
TASK = "cutover.task"  # the application's task class: coding, knowledge, rag, simple, ...
CLIENT_TIMEOUT = "cutover.client.timeout_s"  # double: the client timeout in force for the call
SHADOW_PAIR_ID = "cutover.shadow.pair_id"  # shared by a primary call and its shadow mirror
SHADOW_ROLE = "cutover.shadow.role"  # "primary" or "shadow"
REFERENCE_ANSWER = "cutover.reference_answer"  # known-good answer, content capture only
CONTEXT = "cutover.context"  # retrieved context supplied to a RAG call, content capture only
LABEL_PREFIX = "cutover.label."  # any further application labels
