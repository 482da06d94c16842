"""Provider names normalised onto the GenAI semconv `gen_ai.provider.name` values.

Instrumentations spell providers their own way (`az.ai.openai`, `AWS Bedrock`, `vertexai`,
`mistralai`, OpenInference's `llm.provider` of `google`...), and many older ones send none at
all; the dashboards group by provider and the price fallback looks prices up per provider, so
one spelling per provider is written. A call without a provider gets the one its model name
implies (a Bedrock model id, `claude-*`, `gemini-*`, ...), and a name nothing here knows is
kept as sent (lower-cased), never dropped.
"""

from __future__ import annotations

import re
from functools import lru_cache

# Semconv well-known values (gen_ai.provider.name), plus the spellings seen in the wild.
_ALIASES: dict[str, tuple[str, ...]] = {
    "openai": ("openai", "open_ai", "openai.chat", "openai_chat"),
    "azure.ai.openai": ("azure.ai.openai", "az.ai.openai", "azure_openai", "azure-openai", "azure", "azureopenai"),
    "azure.ai.inference": ("azure.ai.inference", "az.ai.inference", "azure_ai_inference", "azure-ai-inference"),
    "aws.bedrock": ("aws.bedrock", "aws_bedrock", "bedrock", "aws", "amazon", "amazon_bedrock", "aws bedrock"),
    "anthropic": ("anthropic", "claude"),
    "gcp.gemini": (
        "gcp.gemini",
        "gemini",
        "google",
        "google_genai",
        "google.genai",
        "google_ai_studio",
        "google-genai",
    ),
    "gcp.vertex_ai": ("gcp.vertex_ai", "vertex_ai", "vertexai", "vertex", "google_vertex", "google-vertex"),
    "gcp.gen_ai": ("gcp.gen_ai",),
    "mistral_ai": ("mistral_ai", "mistralai", "mistral"),
    "cohere": ("cohere",),
    "groq": ("groq",),
    "deepseek": ("deepseek",),
    "x_ai": ("x_ai", "xai", "x-ai", "grok"),
    "perplexity": ("perplexity",),
    "ibm.watsonx.ai": ("ibm.watsonx.ai", "watsonx", "ibm_watsonx", "watsonx.ai"),
    "ollama": ("ollama",),
    "together": ("together", "together_ai", "togetherai"),
    "fireworks": ("fireworks", "fireworks_ai"),
    "openrouter": ("openrouter",),
}
_NAMES = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

# Model-name patterns for calls that name no provider, first match wins. Bedrock ids carry a
# vendor prefix (`anthropic.claude-...`, `us.amazon.nova-...`) or a `:N` version suffix.
_BY_MODEL: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (
            r"^((us|eu|apac|global|us-gov)\.)?(anthropic|amazon|meta|cohere|mistral|ai21|deepseek|writer|qwen)\.",
            "aws.bedrock",
        ),
        (r"^arn:aws:bedrock:", "aws.bedrock"),
        (r"^claude", "anthropic"),
        (r"^(models/)?(gemini|gemma)", "gcp.gemini"),
        (r"^(mistral|mixtral|codestral|magistral|ministral|pixtral|devstral|open-mistral)", "mistral_ai"),
        (r"^(openai/)?(gpt-|o\d|chatgpt|text-embedding|davinci|babbage)", "openai"),
        (r"^command", "cohere"),
        (r"^deepseek", "deepseek"),
        (r"^grok", "x_ai"),
        (r"^sonar", "perplexity"),
    )
)


@lru_cache(maxsize=4096)
def normalise(provider: str, model: str) -> str:
    """The semconv provider name of a call, from what it sent and, failing that, its model."""
    sent = provider.strip().lower()
    if sent:
        return _NAMES.get(sent, sent)
    name = model.strip().lower()
    for pattern, inferred in _BY_MODEL:
        if pattern.search(name):
            return inferred
    return ""
