"""The model simulator: validated profiles and corpus, seeded statistics, determinism, OpenAI wire format."""

from __future__ import annotations

import json
import statistics
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import openai
import pytest
import yaml

from cutover.local_kafka import free_port
from simulator.outcomes import Outcome, Planner
from simulator.profiles import DEFAULT_PROFILES, ProfileError, load_profiles
from simulator.server import NONCE_HEADER, SimulatorThread
from simulator.settings import SimulatorSettings
from simulator.workload import CORPUS_FILE, Corpus, Task, load_corpus

CORPUS = load_corpus()
PROFILES = load_profiles()


def _messages(task: Task) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for message in CORPUS.messages(task):
        content = message.get("content")
        assert isinstance(content, str)  # the corpus sends plain text
        pairs.append((message["role"], content))
    return pairs


def _seeded_run(model: str, seed: int = 7, rounds: int = 60) -> list[Outcome]:
    """Every corpus task `rounds` times, one nonce per round: the same requests for every model."""
    planner = Planner(PROFILES, CORPUS, seed)
    tasks = [t for items in CORPUS.tasks.values() for t in items]
    return [planner.plan(model, _messages(t), f"r{r}") for r in range(rounds) for t in tasks]


@pytest.fixture(scope="module")
def runs() -> dict[str, list[Outcome]]:
    return {model: _seeded_run(model) for model in ("gpt-5.4", "gpt-5.5", "gpt-5.5-pro", "gpt-4o-mini")}


def _rate(outcomes: list[Outcome], predicate: Callable[[Outcome], bool]) -> float:
    return sum(map(predicate, outcomes)) / len(outcomes)


def _profile_file(tmp_path: Path, **models: dict[str, object]) -> Path:
    """The packaged profiles plus test models: each a copy of gpt-5.4 with `overrides` applied."""
    raw = yaml.safe_load(DEFAULT_PROFILES.read_text())
    raw.pop("defaults")
    for name, overrides in models.items():
        raw["models"][name] = {**raw["models"]["gpt-5.4"], **overrides}
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- configuration ------------------------------------------------------------------------------


def test_packaged_profiles_cover_the_four_models():
    assert set(PROFILES.models) == {"gpt-5.4", "gpt-5.5", "gpt-5.5-pro", "gpt-4o-mini"}


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"faults": {"rate_limited": 1.5}}, "rate_limited"),
        ({"faults": {"rate_limited": 0.6, "server_error": 0.6}}, "more than 1"),
        ({"reasoning_share": {"coding": 0.5}}, "lacks task classes"),
        ({"tokens_per_second": 80}, "tokens_per_second"),
        ({"overhead_ms": {"median": -1, "sigma": 0.3}}, "median"),
    ],
)
def test_bad_profiles_are_refused_with_the_field_named(tmp_path, overrides, complaint):
    path = _profile_file(tmp_path, broken=overrides)
    with pytest.raises(ProfileError) as raised:
        load_profiles(path)
    assert complaint in str(raised.value) and str(path) in str(raised.value)


def test_missing_or_non_yaml_profiles_file_is_a_clear_error(tmp_path):
    with pytest.raises(ProfileError, match="cannot read"):
        load_profiles(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("models: [unclosed")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profiles(tmp_path / "bad.yaml")


def test_corpus_refuses_a_rag_hallucination_that_is_in_the_context():
    raw = yaml.safe_load(CORPUS_FILE.read_text())
    item = raw["tasks"]["rag"][0]
    item["wrong"] = [item["context"].split()[3]]
    with pytest.raises(ValueError, match="appear in the context"):
        Corpus.model_validate(raw)


# -- seeded statistics --------------------------------------------------------------------------


def test_gpt55_spends_15_to_25_percent_fewer_output_tokens_on_the_same_tasks(runs):
    ratios = [
        new.output_tokens / old.output_tokens
        for old, new in zip(runs["gpt-5.4"], runs["gpt-5.5"], strict=True)
        if not (old.fault or new.fault or old.refusal or new.refusal)
    ]
    assert len(ratios) > 1500
    saving = 1 - statistics.median(ratios)
    assert 0.15 <= saving <= 0.25, saving


def test_gpt55_thinks_longer_before_the_first_token_on_coding_and_is_faster_on_simple(runs):
    def ttft(model: str, task: str) -> float:
        times: list[float] = [o.time_to_first_token_s for o in runs[model] if o.task == task and not o.fault]
        return statistics.median(times)

    assert ttft("gpt-5.5", "coding") > 1.3 * ttft("gpt-5.4", "coding")
    assert ttft("gpt-5.5-pro", "coding") > ttft("gpt-5.5", "coding")
    assert ttft("gpt-5.5", "simple") < ttft("gpt-5.4", "simple")


def test_refusals_are_more_frequent_on_gpt55_and_come_both_ways(runs):
    refused = {m: _rate(runs[m], lambda o: o.refusal is not None) for m in runs}
    assert refused["gpt-5.5"] > 1.5 * refused["gpt-5.4"] > 0
    kinds = Counter(o.refusal for o in runs["gpt-5.5"] if o.refusal)
    assert kinds["api"] > 0 and kinds["prose"] > 0
    sensitive = [
        o for o in runs["gpt-5.5"] if o.task_id in ("code-port-scanner", "rag-security-advisory") and not o.fault
    ]
    assert _rate(sensitive, lambda o: o.refusal is not None) > 3 * refused["gpt-5.5"]


def test_hallucinations_plant_wrong_facts_on_knowledge_and_rag_at_the_profile_rate(runs):
    tasks = {t.id: t for items in CORPUS.tasks.values() for t in items}
    for model in ("gpt-5.4", "gpt-4o-mini"):
        eligible = [o for o in runs[model] if o.task in ("knowledge", "rag") and not o.fault and not o.refusal]
        for task_class in ("knowledge", "rag"):
            rate = _rate([o for o in eligible if o.task == task_class], lambda o: o.hallucinated)
            expected = PROFILES.models[model].hallucination_rate[task_class]
            assert abs(rate - expected) < 0.5 * expected + 0.01, (model, task_class, rate, expected)
        for o in eligible:
            task = tasks[o.task_id]
            if o.hallucinated:
                assert task.fact not in o.text and any(w in o.text for w in task.wrong)
                assert not task.context or not any(w in task.context for w in task.wrong if w in o.text)
            else:
                assert o.text == task.reference
    assert not any(o.hallucinated for o in runs["gpt-5.4"] if o.task in ("coding", "simple"))


def test_fault_rates_follow_the_profile(runs):
    for model in ("gpt-5.4", "gpt-5.5-pro"):
        faults = PROFILES.models[model].faults
        n = len(runs[model])
        for kind in ("rate_limited", "server_error", "stall"):
            expected = getattr(faults, kind)
            observed = _rate(runs[model], lambda o: o.fault == kind)
            assert abs(observed - expected) < 4 * (expected * (1 - expected) / n) ** 0.5 + 0.001, (model, kind)


def test_token_conventions_cached_and_reasoning(runs):
    ok = [o for o in runs["gpt-5.4"] if not o.fault]
    assert all(0 <= o.cached_tokens <= o.input_tokens and 0 <= o.reasoning_tokens <= o.output_tokens for o in ok)
    assert 0.35 < _rate(ok, lambda o: o.cached_tokens > 0) < 0.65
    assert _rate([o for o in ok if o.task == "coding"], lambda o: o.reasoning_tokens > 0) == 1.0
    assert not any(o.reasoning_tokens for o in runs["gpt-4o-mini"])


def test_same_seed_same_outcomes_other_seed_other_outcomes():
    assert _seeded_run("gpt-5.5", seed=3, rounds=5) == _seeded_run("gpt-5.5", seed=3, rounds=5)
    assert _seeded_run("gpt-5.5", seed=3, rounds=5) != _seeded_run("gpt-5.5", seed=4, rounds=5)


# -- the HTTP server through the real openai SDK ------------------------------------------------


@pytest.fixture(scope="module")
def test_profiles(tmp_path_factory) -> Path:
    never = {"faults": {"rate_limited": 0.0, "server_error": 0.0, "stall": 0.0}}
    models: dict[str, dict[str, object]] = {
        "sim-ok": {**never, "cache_hit_rate": 1.0, "hallucination_rate": {}},
        "sim-api-refusal": {
            **never,
            "refusal": {
                "rate": dict.fromkeys(("coding", "knowledge", "rag", "simple"), 1.0),
                "sensitive_rate": 1.0,
                "api_share": 1.0,
            },
        },
        "sim-prose-refusal": {
            **never,
            "refusal": {
                "rate": dict.fromkeys(("coding", "knowledge", "rag", "simple"), 1.0),
                "sensitive_rate": 1.0,
                "api_share": 0.0,
            },
        },
        "sim-429": {"faults": {"rate_limited": 1.0}},
        "sim-500": {"faults": {"server_error": 1.0}},
        "sim-stall": {"faults": {"stall": 1.0}},
    }
    return _profile_file(tmp_path_factory.mktemp("profiles"), **models)


@pytest.fixture(scope="module")
def simulator(test_profiles) -> Iterator[SimulatorThread]:
    settings = SimulatorSettings(
        simulator_port=free_port(), simulator_profiles=test_profiles, simulator_time_scale=0.01, simulator_seed=11
    )
    with SimulatorThread(settings) as running:
        yield running


@pytest.fixture
def client(simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=simulator.base_url, api_key="sim", max_retries=0, timeout=10) as c:
        yield c


KNOWLEDGE = CORPUS.tasks["knowledge"][0]
CODING = CORPUS.tasks["coding"][1]


def test_chat_completion_wire_format(client):
    reply = client.chat.completions.create(model="sim-ok", messages=CORPUS.messages(KNOWLEDGE))
    choice = reply.choices[0]
    assert choice.message.content == KNOWLEDGE.reference and choice.message.refusal is None
    assert choice.finish_reason == "stop" and reply.model == "sim-ok" and reply.id.startswith("chatcmpl-")
    usage = reply.usage
    assert usage.prompt_tokens > usage.prompt_tokens_details.cached_tokens > 0  # prompt includes cached
    assert (
        usage.completion_tokens > usage.completion_tokens_details.reasoning_tokens > 0
    )  # completion includes reasoning
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_chat_with_include_usage_ends_with_a_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="sim-ok", messages=CORPUS.messages(CODING), stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CODING.answer
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens_details.reasoning_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model="sim-ok", messages=CORPUS.messages(CODING), stream=True))
    assert all(c.usage is None and c.choices for c in plain)


def test_api_refusal_is_message_refusal_with_finish_reason_stop(client):
    same = {"extra_headers": {NONCE_HEADER: "refusal"}}  # the same nonce: the same draw, streamed or not
    reply = client.chat.completions.create(model="sim-api-refusal", messages=CORPUS.messages(KNOWLEDGE), **same)
    message = reply.choices[0].message
    assert message.content is None and message.refusal and reply.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model="sim-api-refusal", messages=CORPUS.messages(KNOWLEDGE), stream=True, **same
        )
    )
    assert "".join(c.choices[0].delta.refusal or "" for c in chunks) == message.refusal
    prose = client.chat.completions.create(model="sim-prose-refusal", messages=CORPUS.messages(KNOWLEDGE))
    assert prose.choices[0].message.refusal is None and "can't" in prose.choices[0].message.content


def test_responses_endpoint_plain_streamed_and_refused(client):
    system, user = CORPUS.messages(KNOWLEDGE)
    reply = client.responses.create(model="sim-ok", instructions=system["content"], input=user["content"])
    assert reply.output_text == KNOWLEDGE.reference and reply.status == "completed"
    assert reply.usage.input_tokens_details.cached_tokens > 0 and reply.usage.output_tokens_details.reasoning_tokens > 0
    events = list(
        client.responses.create(model="sim-ok", instructions=system["content"], input=user["content"], stream=True)
    )
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == KNOWLEDGE.reference
    assert [e.sequence_number for e in events] == list(range(len(events)))
    refused = client.responses.create(model="sim-api-refusal", input=[{"role": "user", "content": user["content"]}])
    assert refused.output[-1].content[0].type == "refusal"


def test_max_tokens_truncates_with_finish_reason_length(client):
    reply = client.chat.completions.create(model="sim-ok", messages=CORPUS.messages(CODING), max_completion_tokens=5)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [("sim-429", openai.RateLimitError, 429), ("sim-500", openai.InternalServerError, 500)],
)
def test_errors_are_openai_error_json(client, model, error, status):
    with pytest.raises(error) as raised:
        client.chat.completions.create(model=model, messages=CORPUS.messages(KNOWLEDGE))
    assert raised.value.status_code == status and raised.value.body["message"]


def test_stall_outlasts_the_client_timeout(simulator):
    with openai.OpenAI(base_url=simulator.base_url, api_key="sim", max_retries=0, timeout=0.5) as short:
        with pytest.raises(openai.APITimeoutError):
            short.chat.completions.create(model="sim-stall", messages=CORPUS.messages(KNOWLEDGE))


def test_unknown_model_and_bad_requests(client, simulator):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="sim-ok", messages=[])
    request = urllib.request.Request(f"{simulator.base_url}/chat/completions", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(request, timeout=5)
    assert bad.value.code == 400 and json.loads(bad.value.read())["error"]["type"] == "invalid_request_error"


def _http_outcomes(base_url: str, count: int) -> list[tuple]:
    """`count` seeded requests through the SDK, concurrently: what each one got back."""
    tasks = [t for items in CORPUS.tasks.values() for t in items]

    def one(client: openai.OpenAI, i: int) -> tuple:
        task = tasks[i % len(tasks)]
        try:
            reply = client.chat.completions.create(
                model="gpt-5.5", messages=CORPUS.messages(task), extra_headers={NONCE_HEADER: f"n{i}"}
            )
        except openai.APIStatusError as error:
            return (i, error.status_code)
        except openai.APITimeoutError:
            return (i, "timeout")
        m, usage = reply.choices[0].message, reply.usage
        assert usage and usage.prompt_tokens_details and usage.completion_tokens_details  # the simulator sends them
        return (
            i,
            m.content,
            m.refusal,
            usage.prompt_tokens,
            usage.prompt_tokens_details.cached_tokens,
            usage.completion_tokens,
            usage.completion_tokens_details.reasoning_tokens,
        )

    with (
        openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0, timeout=0.5) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        return sorted(pool.map(partial(one, client), range(count)))


def test_seeded_http_runs_are_identical_whatever_the_arrival_order():
    runs = []
    for seed in (5, 5, 6):
        settings = SimulatorSettings(simulator_port=free_port(), simulator_seed=seed, simulator_time_scale=0.0)
        with SimulatorThread(settings) as running:
            runs.append(_http_outcomes(running.base_url, 240))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    failed = [r for r in runs[0] if len(r) == 2]
    assert all(r[1] in (429, 500, "timeout") for r in failed) and len(failed) < 25


def test_the_candidate_paraphrases_same_facts_in_other_words(runs):
    """Shadow pairs never match verbatim, yet a right answer agrees with the primary's and a planted error does not."""
    from cutover.agreement import answers_agree

    tasks = {t.id: t for items in CORPUS.tasks.values() for t in items}
    answers = [o for o in runs["gpt-5.5"] if o.task_id and not o.fault and not o.refusal and o.finish_reason == "stop"]
    assert answers and all(o.text != tasks[o.task_id].correct_answer for o in answers)
    for o in answers:
        verdict = answers_agree(tasks[o.task_id].correct_answer, o.text)
        assert verdict.agree != o.hallucinated, (o.text, verdict)
