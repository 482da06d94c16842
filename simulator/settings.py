"""Settings of the simulator (`cutover simulate`) and the load generator (`cutover loadgen`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from cutover.settings import CutoverSettings
from simulator.workload import TaskClass, parse_mix


class SimulatorSettings(CutoverSettings):
    simulator_host: str = Field(default="127.0.0.1", description="Address the simulator listens on.")
    simulator_port: int = Field(default=8400, ge=1, le=65535, description="Port the simulator listens on.")
    simulator_profiles: Path | None = Field(
        default=None, description="Model profiles YAML file (default: the packaged simulator/profiles.yaml)."
    )
    simulator_seed: int = Field(default=42, description="Seed of every simulated outcome (same seed, same outcomes).")
    simulator_time_scale: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="Multiplier on simulated latencies (0 = answer at once; stalls still outlast the client timeout).",
    )
    simulator_max_stall_s: float = Field(
        default=600.0,
        gt=0.0,
        description="How long a stall lasts when the client sends no read timeout; then a 500 error.",
    )


class LoadgenSettings(CutoverSettings):
    loadgen_base_url: str = Field(
        default="http://127.0.0.1:8400/v1", description="OpenAI-compatible base URL the load generator calls."
    )
    loadgen_model: str = Field(default="gpt-5.4", description="Primary model of the load generator.")
    loadgen_rate: float = Field(
        default=5.0, ge=0.0, description="Target primary calls per second (0 = as fast as concurrency allows)."
    )
    loadgen_concurrency: int = Field(default=16, ge=1, le=1024, description="Primary calls in flight at most.")
    loadgen_mix: str = Field(
        default="coding=0.3,knowledge=0.3,rag=0.3,simple=0.1", description="Workload mix: task=weight, comma separated."
    )
    loadgen_stream_fraction: float = Field(default=0.5, ge=0.0, le=1.0, description="Fraction of calls that stream.")
    loadgen_responses_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Fraction of calls made on `/v1/responses` instead of chat completions.",
    )
    loadgen_timeout: float = Field(
        default=30.0, gt=0.0, description="Client timeout per call in seconds (stalls end here)."
    )
    loadgen_seed: int = Field(
        default=42, description="Seed of the workload, stream and shadow draws (same seed, same calls)."
    )
    loadgen_shadow: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Fraction of primary calls mirrored to the shadow model."
    )
    loadgen_shadow_model: str = Field(default="gpt-5.5", description="Candidate model that receives shadow calls.")
    loadgen_shadow_workers: int = Field(default=4, ge=1, le=256, description="Threads that run shadow calls.")
    loadgen_shadow_queue: int = Field(
        default=64,
        ge=0,
        le=100_000,
        description="Shadow calls waiting for a thread at most; beyond, new ones are dropped and counted.",
    )

    @field_validator("loadgen_mix")
    @classmethod
    def _mix(cls, value: str) -> str:
        parse_mix(value)
        return value

    @property
    def mix(self) -> dict[TaskClass, float]:
        return parse_mix(self.loadgen_mix)
