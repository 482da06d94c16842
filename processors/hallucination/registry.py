"""Check names (the `CUTOVER_HALLUCINATION_CHECKS` vocabulary) and how to build them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from processors.hallucination.checks import (
    AnswerRelevance,
    Check,
    ContextGrounding,
    ReferenceMismatch,
    ShadowDisagreement,
    UnsupportedFacts,
)


def _embedding(flag_score: float) -> Check:
    # Imported only when asked for: it needs the [embeddings] extra (torch).
    from processors.hallucination.embedding import EmbeddingSimilarity

    return EmbeddingSimilarity(flag_score)


FACTORIES: dict[str, Callable[[float], Check]] = {
    ContextGrounding.name: ContextGrounding,
    UnsupportedFacts.name: UnsupportedFacts,
    ReferenceMismatch.name: ReferenceMismatch,
    ShadowDisagreement.name: ShadowDisagreement,
    AnswerRelevance.name: AnswerRelevance,
    "embedding_similarity": _embedding,
}
# Checks that call out (slow, metered): run by their own component in the worker's background
# path, not per batch (`llm_judge`: processors/hallucination/judge.py).
BACKGROUND_CHECKS = ("llm_judge",)
CHECK_NAMES = (*FACTORIES, *BACKGROUND_CHECKS)
# answer_relevance is opt-in: on 2,800 real answers (FaithBench, HaluEval) it flagged none.
OPT_IN_CHECKS = ("embedding_similarity", AnswerRelevance.name)
DEFAULT_CHECKS = tuple(name for name in FACTORIES if name not in OPT_IN_CHECKS)


def build_checks(names: Sequence[str] = DEFAULT_CHECKS, flag_score: float = 0.5) -> list[Check]:
    unknown = [name for name in names if name not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown hallucination check(s): {', '.join(unknown)}")
    return [FACTORIES[name](flag_score) for name in names if name not in BACKGROUND_CHECKS]
