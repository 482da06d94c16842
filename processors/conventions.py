"""Which span attributes of each GenAI instrumentation convention fill which of our fields: data, not code.

The decoder walks a span's attributes once and stores each value it knows in the slot its
key maps to (`ATTRIBUTE_SLOTS`); keys of different conventions that mean the same thing
share a slot, so one walk normalises every convention. Attribute names are those the
libraries' sources set (checked against OpenLLMetry's `opentelemetry-semantic-conventions-ai`,
OpenLIT's `semcov`, OpenInference's `semconv.trace`, Logfire's OpenAI integration).
Conventions that need more than a key (indexed message attributes, span events) are the
further tables below.
"""

from __future__ import annotations

from cutover import semconv

# Slots of the per-span attribute list the decoder fills.
(
    OPERATION, MODEL, RESPONSE_MODEL, PROVIDER, INPUT_TOKENS, OUTPUT_TOKENS, CACHED, REASONING,
    TTFT_S, FINISH, ERROR_TYPE, REFUSAL, TASK, CLIENT_TIMEOUT, PAIR, ROLE, INPUT_MESSAGES,
    OUTPUT_MESSAGES, CONTEXT, REFERENCE, STREAM_TTFT_S, IS_STREAM, SPAN_KIND, INVOCATION_PARAMETERS,
    DURATION_S, MSG_TEMPLATE, INDEXED_MARK, RESPONSE_JSON, USAGE_JSON,
) = range(29)  # fmt: skip
SLOT_COUNT = 29

CONVENTIONS: dict[str, dict[str, int]] = {
    # OpenTelemetry GenAI semantic conventions (current), as the official instrumentation sends them.
    "genai-semconv": {
        semconv.OPERATION: OPERATION,
        semconv.REQUEST_MODEL: MODEL,
        semconv.RESPONSE_MODEL: RESPONSE_MODEL,
        semconv.PROVIDER: PROVIDER,
        semconv.INPUT_TOKENS: INPUT_TOKENS,
        semconv.OUTPUT_TOKENS: OUTPUT_TOKENS,
        semconv.CACHE_READ_INPUT_TOKENS: CACHED,
        semconv.REASONING_OUTPUT_TOKENS: REASONING,
        semconv.TIME_TO_FIRST_CHUNK: TTFT_S,
        semconv.FINISH_REASONS: FINISH,
        semconv.ERROR_TYPE: ERROR_TYPE,
        semconv.INPUT_MESSAGES: INPUT_MESSAGES,
        semconv.OUTPUT_MESSAGES: OUTPUT_MESSAGES,
    },
    # Ours, added by `cutover collect`'s span processor and response probe.
    "cutover": {
        semconv.REFUSAL: REFUSAL,
        semconv.TASK: TASK,
        semconv.CLIENT_TIMEOUT: CLIENT_TIMEOUT,
        semconv.SHADOW_PAIR_ID: PAIR,
        semconv.SHADOW_ROLE: ROLE,
        semconv.CONTEXT: CONTEXT,
        semconv.REFERENCE_ANSWER: REFERENCE,
    },
    # Older GenAI semconv (before 1.27/1.37): system instead of provider, prompt/completion tokens.
    "genai-semconv-old": {
        "gen_ai.system": PROVIDER,
        "gen_ai.usage.prompt_tokens": INPUT_TOKENS,
        "gen_ai.usage.completion_tokens": OUTPUT_TOKENS,
        # The first indexed message attribute of captured content (see INDEXED_MESSAGES).
        "gen_ai.prompt.0.role": INDEXED_MARK,
        "gen_ai.prompt.0.content": INDEXED_MARK,
        "gen_ai.completion.0.role": INDEXED_MARK,
        "gen_ai.completion.0.content": INDEXED_MARK,
        "gen_ai.completion.0.finish_reason": INDEXED_MARK,
        "gen_ai.completion.0.refusal": INDEXED_MARK,
    },
    # OpenLLMetry (traceloop `opentelemetry-instrumentation-openai`).
    "openllmetry": {
        "llm.request.type": OPERATION,
        "llm.usage.prompt_tokens": INPUT_TOKENS,
        "llm.usage.completion_tokens": OUTPUT_TOKENS,
        "gen_ai.usage.cache_read_input_tokens": CACHED,
        "gen_ai.usage.reasoning_tokens": REASONING,
        "llm.usage.reasoning_tokens": REASONING,  # 0.47
        "llm.is_streaming": IS_STREAM,
        "gen_ai.is_streaming": IS_STREAM,  # 0.62
        "gen_ai.response.finish_reason": FINISH,
    },
    # OpenLIT: its TTFT attribute is also set (to the latency) on calls that did not stream.
    "openlit": {
        "gen_ai.server.time_to_first_token": STREAM_TTFT_S,
        "gen_ai.request.is_stream": IS_STREAM,
        "gen_ai.request.stream": IS_STREAM,  # 1.45
    },
    # OpenInference (Arize `openinference-instrumentation-openai`).
    "openinference": {
        "openinference.span.kind": SPAN_KIND,
        "llm.model_name": MODEL,
        "llm.invocation_parameters": INVOCATION_PARAMETERS,
        "llm.system": PROVIDER,
        "llm.provider": PROVIDER,
        "llm.token_count.prompt": INPUT_TOKENS,
        "llm.token_count.completion": OUTPUT_TOKENS,
        "llm.token_count.prompt_details.cache_read": CACHED,
        "llm.token_count.completion_details.reasoning": REASONING,
        "llm.finish_reason": FINISH,
        "llm.input_messages.0.message.role": INDEXED_MARK,
        "llm.input_messages.0.message.content": INDEXED_MARK,
        "llm.output_messages.0.message.role": INDEXED_MARK,
        "llm.output_messages.0.message.content": INDEXED_MARK,
        # The whole response as JSON: the only place an API refusal's text is (read when no output text).
        "output.value": RESPONSE_JSON,
    },
    # Logfire (Pydantic): a stream's usage arrives on a zero-length result span with `duration`.
    "logfire": {
        "duration": DURATION_S,
        "logfire.msg_template": MSG_TEMPLATE,
        "request_data": INVOCATION_PARAMETERS,  # the request's JSON, like OpenInference's parameters
        # The API's usage object as JSON: the only place Logfire puts reasoning tokens (read when absent).
        "gen_ai.usage.raw": USAGE_JSON,
    },
}

ATTRIBUTE_SLOTS: dict[str, int] = {key: slot for table in CONVENTIONS.values() for key, slot in table.items()}
if len(ATTRIBUTE_SLOTS) != sum(len(table) for table in CONVENTIONS.values()):
    raise ValueError("an attribute key is mapped by two conventions")

# OpenInference span kinds that are model calls; a span of another kind (CHAIN, TOOL, ...) is not one.
CALL_SPAN_KINDS = frozenset({"LLM"})

# Indexed message attributes (`<prefix><i>.<rest>`): prefix -> True for input, False for output.
# Keys vary with the index, so the walk cannot map them; a span whose message 0 is there
# (INDEXED_MARK) gets a second pass for them, and no other span pays for a prefix test.
INDEXED_MESSAGES: dict[str, bool] = {
    "gen_ai.prompt.": True,  # older semconv / OpenLLMetry
    "gen_ai.completion.": False,
    "llm.input_messages.": True,  # OpenInference
    "llm.output_messages.": False,
}
# `<rest>` of an indexed attribute that holds message text (OpenInference may split a message
# into `message.contents.<j>.message_content.text` parts), the one holding an API refusal's
# text (OpenLLMetry 0.47), and the one holding a finish reason.
INDEXED_TEXT = ("content", "message.content")
INDEXED_REFUSAL = "refusal"
INDEXED_TEXT_PARTS = ("message.contents.", ".message_content.text")
INDEXED_FINISH = "finish_reason"

# Span events whose time marks the first streamed chunk (the first such event is the TTFT):
# OpenLLMetry (`llm.content.completion.chunk`; `gen_ai.content.completion.chunk` in 0.62,
# `gen_ai.completion.chunk` in some releases), OpenInference (`First Token Stream Event`).
FIRST_CHUNK_EVENTS = frozenset(
    {
        "llm.content.completion.chunk",
        "gen_ai.content.completion.chunk",
        "gen_ai.completion.chunk",
        "First Token Stream Event",
    }
)
# The exception event every OpenTelemetry SDK records (`span.record_exception`).
EXCEPTION_EVENT = "exception"
EXCEPTION_TYPE = "exception.type"

# Logfire: the template that marks a stream's result span, and the request span it completes.
LOGFIRE_STREAM_RESULT = "streaming response"
