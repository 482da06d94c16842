"""Model profiles: how each simulated model behaves, loaded from a validated YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.workload import TASK_CLASSES, TaskClass

DEFAULT_PROFILES = Path(__file__).with_name("profiles.yaml")

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNormal(_Strict):
    median: Annotated[float, Field(ge=0.0)]
    sigma: Annotated[float, Field(ge=0.0, le=3.0)]


class Refusals(_Strict):
    rate: dict[TaskClass, Rate]
    sensitive_rate: Rate = Field(description="Refusal rate on prompts the corpus marks sensitive.")
    api_share: Rate = Field(description="Share of refusals sent as `message.refusal`; the rest are refusal prose.")


class Faults(_Strict):
    rate_limited: Rate = 0.0
    server_error: Rate = 0.0
    stall: Rate = 0.0

    @model_validator(mode="after")
    def _sum(self) -> Faults:
        if self.rate_limited + self.server_error + self.stall > 1.0:
            raise ValueError("fault rates add up to more than 1")
        return self


class ModelProfile(_Strict):
    overhead_ms: LogNormal
    output_tokens_per_s: Positive
    reasoning_tokens_per_s: Positive
    output_token_factor: Positive
    shared_sigma: Annotated[float, Field(ge=0.0, le=2.0)]
    model_sigma: Annotated[float, Field(ge=0.0, le=2.0)]
    reasoning_share: dict[TaskClass, Annotated[float, Field(ge=0.0, lt=1.0)]]
    cache_hit_rate: Rate
    refusal: Refusals
    hallucination_rate: dict[TaskClass, Rate]
    faults: Faults
    paraphrase: bool = Field(
        default=False, description="Word answers in its own way (same facts) instead of the corpus wording."
    )

    @model_validator(mode="after")
    def _every_task_class(self) -> ModelProfile:
        for name, table in (("reasoning_share", self.reasoning_share), ("refusal.rate", self.refusal.rate)):
            missing = set(TASK_CLASSES) - set(table)
            if missing:
                raise ValueError(f"{name} lacks task classes {sorted(missing)}")
        return self


class Profiles(_Strict):
    models: dict[str, ModelProfile] = Field(min_length=1)

    def get(self, model: str) -> ModelProfile | None:
        return self.models.get(model)


class ProfileError(ValueError):
    """The profiles file is missing, not YAML, or fails validation (message names the file)."""


def load_profiles(path: Path | None = None) -> Profiles:
    path = path or DEFAULT_PROFILES
    try:
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict):
            raw.pop("defaults", None)  # only a YAML anchor for the profiles
        return Profiles.model_validate(raw)
    except OSError as error:
        raise ProfileError(f"cannot read model profiles {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ProfileError(f"model profiles {path} are not valid YAML: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"model profiles {path}: {where}: {first['msg']} ({error.error_count()} error(s))") from None
