"""How applications feed llm-cutover: OpenTelemetry spans of their OpenAI calls, onto Kafka.

- `collectors.instrument.instrument()`: SDK + the official OpenAI instrumentor + our additions;
- `collectors.labels.call_labels()`: per-call task, timeout, shadow pair and free labels;
- `collectors.kafka_exporter.KafkaSpanExporter`: spans to Kafka as the Collector's kafkaexporter writes them;
- `cutover collect` (`collectors.receiver`): OTLP/HTTP in, the same Kafka messages out;
- `collectors/otelcol.yaml`: the same with a stock OpenTelemetry Collector.
"""
