"""The `cutover simulate` and `cutover loadgen` commands (registered in `cutover/cli.py`)."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cutover.settings import SettingsError, load
from simulator.settings import LoadgenSettings, SimulatorSettings

if TYPE_CHECKING:
    from rich.console import Console

    from simulator.loadgen import Summary

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def _given(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1.5h` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"expected seconds or a number with s/m/h, got {text!r}")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def simulate(
    host: str | None = typer.Option(None, help="Listen address [CUTOVER_SIMULATOR_HOST]."),
    port: int | None = typer.Option(None, help="Port [CUTOVER_SIMULATOR_PORT]."),
    seed: int | None = typer.Option(None, help="Seed of every outcome [CUTOVER_SIMULATOR_SEED]."),
    profiles: Path | None = typer.Option(None, help="Model profiles YAML [CUTOVER_SIMULATOR_PROFILES]."),
    time_scale: float | None = typer.Option(
        None, help="Latency multiplier, 0 = instant [CUTOVER_SIMULATOR_TIME_SCALE]."
    ),
) -> None:
    """Serve simulated gpt-5.4 / gpt-5.5 / gpt-5.5-pro / gpt-4o-mini on an OpenAI-compatible API."""
    settings = load(
        SimulatorSettings,
        **_given(
            simulator_host=host,
            simulator_port=port,
            simulator_seed=seed,
            simulator_profiles=profiles,
            simulator_time_scale=time_scale,
        ),
    )
    from simulator.profiles import ProfileError
    from simulator.server import Simulator, serve

    try:
        models = list(Simulator(settings).planner.profiles.models)
    except ProfileError as error:
        print(f"cutover: {error}", file=sys.stderr)
        raise SettingsError(2) from None
    typer.echo(
        f"simulator on http://{settings.simulator_host}:{settings.simulator_port}/v1 "
        f"(models {', '.join(models)}; seed {settings.simulator_seed}; time scale {settings.simulator_time_scale})"
    )
    serve(settings)


def loadgen(
    calls: int | None = typer.Option(
        None, min=1, help="Stop after this many primary calls (neither limit: until Ctrl-C)."
    ),
    duration: str | None = typer.Option(None, help="Stop after this long: seconds, or 90s / 5m / 1h."),
    rate: float | None = typer.Option(
        None, help="Target primary calls per second, 0 = unpaced [CUTOVER_LOADGEN_RATE]."
    ),
    concurrency: int | None = typer.Option(None, help="Primary calls in flight at most [CUTOVER_LOADGEN_CONCURRENCY]."),
    model: str | None = typer.Option(None, help="Primary model [CUTOVER_LOADGEN_MODEL]."),
    shadow: float | None = typer.Option(
        None, help="Fraction mirrored to the shadow model, 0 = off [CUTOVER_LOADGEN_SHADOW]."
    ),
    shadow_model: str | None = typer.Option(
        None, help="Candidate model of shadow calls [CUTOVER_LOADGEN_SHADOW_MODEL]."
    ),
    mix: str | None = typer.Option(None, help="Workload mix, e.g. coding=0.3,knowledge=0.3,rag=0.3,simple=0.1."),
    stream_fraction: float | None = typer.Option(
        None, help="Fraction of streamed calls [CUTOVER_LOADGEN_STREAM_FRACTION]."
    ),
    responses_fraction: float | None = typer.Option(
        None, help="Fraction sent to /v1/responses [CUTOVER_LOADGEN_RESPONSES_FRACTION]."
    ),
    timeout: float | None = typer.Option(None, help="Client timeout per call, seconds [CUTOVER_LOADGEN_TIMEOUT]."),
    seed: int | None = typer.Option(None, help="Seed of the workload draws [CUTOVER_LOADGEN_SEED]."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible base URL [CUTOVER_LOADGEN_BASE_URL]."),
    capture_content: bool | None = typer.Option(
        None,
        "--capture-content/--no-capture-content",
        help="Record prompts, answers, references and context [CUTOVER_CAPTURE_CONTENT].",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Drive the simulator (or any OpenAI-compatible API) through the instrumented openai SDK; spans go to Kafka."""
    settings = load(
        LoadgenSettings,
        **_given(
            loadgen_rate=rate,
            loadgen_concurrency=concurrency,
            loadgen_model=model,
            loadgen_shadow=shadow,
            loadgen_shadow_model=shadow_model,
            loadgen_mix=mix,
            loadgen_stream_fraction=stream_fraction,
            loadgen_responses_fraction=responses_fraction,
            loadgen_timeout=timeout,
            loadgen_seed=seed,
            loadgen_base_url=base_url,
        ),
    )
    seconds = parse_duration(duration) if duration is not None else None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.loadgen import run_loadgen

    err = Console(stderr=True)
    stop = _stop_on_signals(err)
    columns = [
        TextColumn("[bold]loadgen"),
        BarColumn(),
        MofNCompleteColumn() if calls else TextColumn(""),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    ]
    started = time.monotonic()
    with Progress(*columns, console=err, disable=not err.is_terminal, transient=True) as progress:
        bar = progress.add_task("calls", total=calls or seconds, status="")

        def on_call(done: int, errors: int) -> None:
            position = done if calls else min(time.monotonic() - started, seconds or 0.0)
            progress.update(bar, completed=position, status=f"{done} calls, {errors} errors")

        try:
            summary = run_loadgen(settings, calls, seconds, stop, capture_content=capture_content, on_call=on_call)
        except KeyboardInterrupt:
            err.print("aborted: calls in flight and buffered spans were abandoned")
            raise typer.Exit(130) from None
    if json_output:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        out = Console()
        if not out.is_terminal:
            out.width = 120
        _print_summary(summary, out, settings)
    if summary.spans_dropped:
        err.print(f"[red]{summary.spans_dropped} of {summary.spans_expected} spans were dropped on the way to Kafka")
        raise typer.Exit(1)


def _stop_on_signals(console: Console) -> threading.Event:
    """Ctrl-C or SIGTERM: start no new calls, finish the ones in flight, flush, summarise; twice: abort."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        console.print("stopping: finishing the calls in flight and flushing spans (again to abort)")
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _print_summary(summary: Summary, console: Console, settings: LoadgenSettings) -> None:
    from rich.table import Table

    table = Table(
        title=f"{summary.calls} calls in {summary.elapsed_s:.1f} s ({summary.rate_per_s}/s) to {summary.base_url}"
    )
    for column in ("model", "role", "calls", "ok", "errors", "refused", "streamed", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("model", "role") else "right")
    for name, m in sorted(summary.models.items()):
        role = "primary" if name == summary.primary_model else "shadow"
        latency = [f"{m.latency_ms[q]:.0f}" if q in m.latency_ms else "-" for q in ("p50", "p95", "p99")]
        errors = sum(m.errors.values())
        table.add_row(name, role, str(m.calls), str(m.ok), str(errors), str(m.api_refusals), str(m.streamed), *latency)
    console.print(table)
    for name, m in sorted(summary.models.items()):
        if m.errors:
            console.print(f"errors of {name}: " + ", ".join(f"{kind} {n}" for kind, n in sorted(m.errors.items())))
    s = summary.shadow
    console.print("tasks: " + ", ".join(f"{name} {n}" for name, n in sorted(summary.tasks.items())))
    console.print(
        f"shadow {s.model} at {s.fraction:.0%}: {s.sampled} sampled, {s.mirrored} mirrored, {s.dropped} dropped (pool full)"
    )
    console.print(f"spans: {summary.spans_expected} expected on Kafka, {summary.spans_dropped} dropped by the exporter")
    target = settings.loadgen_rate
    if target and summary.rate_per_s < 0.9 * target:
        console.print(
            f"[yellow]target rate {target}/s not reached: all {settings.loadgen_concurrency} call slots were busy; "
            "raise --concurrency or lower --rate"
        )
    console.print("refused = API refusals (message.refusal); refusal prose is classified by the processor")
