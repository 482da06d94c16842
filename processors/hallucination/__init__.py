"""Hallucination checks, pluggable (`Check` protocol), run off the hot path by `HallucinationWorker`."""

from processors.hallucination.checks import Check, Flag
from processors.hallucination.registry import CHECK_NAMES, DEFAULT_CHECKS, build_checks
from processors.hallucination.worker import HallucinationWorker, WorkerStats

__all__ = ["CHECK_NAMES", "DEFAULT_CHECKS", "Check", "Flag", "HallucinationWorker", "WorkerStats", "build_checks"]
