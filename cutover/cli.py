"""The `cutover` command. Each component registers its own sub-command module here."""

from __future__ import annotations

import sys

import typer

from collectors.command import collect
from cutover.kafka_clients import KafkaConnection
from cutover.local_kafka import BrokerError, BrokerSettings, LocalBroker, round_trip
from cutover.settings import CutoverSettings, SettingsError, load
from cutover.store import StoreBusy, client_for, ping
from dashboards.command import dashboard
from processors.command import process
from simulator.command import loadgen, simulate

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Observability for an LLM model cutover.",
)
kafka_app = typer.Typer(no_args_is_help=True, help="The local Apache Kafka broker (KRaft, 127.0.0.1).")
app.add_typer(kafka_app, name="kafka")
# Each component's command module keeps its heavy imports inside the command, so `cutover` starts fast.
for command in (collect, process, dashboard, simulate, loadgen):
    app.command()(command)


def _broker() -> LocalBroker:
    return LocalBroker.from_settings(load(BrokerSettings))


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (fetching its jars once) and wait for a produce/consume round trip."""
    broker = _broker()
    started = broker.start()
    word = "started" if started else "already running"
    typer.echo(f"kafka {word} on {broker.bootstrap} (log: {broker.log_file})")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker and free its ports; its data stays for the next start."""
    broker = _broker()
    typer.echo("kafka stopped" if broker.stop() else "kafka was not running")


@kafka_app.command("status")
def kafka_status() -> None:
    """Exit 0 only if the broker answers a produce/consume round trip."""
    broker = _broker()
    if not broker.running():
        typer.echo(f"kafka is not running on {broker.bootstrap} (log: {broker.log_file})", err=True)
        raise typer.Exit(1)
    seconds = broker.round_trip(timeout=15)
    typer.echo(
        f"kafka running on {broker.bootstrap}, pid {broker.pid()}, round trip {seconds * 1000:.0f} ms (log: {broker.log_file})"
    )


@app.command("demo")
def demo(
    seconds: float | None = typer.Option(
        None, help="Stop by itself after this many seconds (default: run until Ctrl-C)."
    ),
) -> None:
    """Run the whole pipeline locally: Kafka, simulator, load generator, processor and dashboard."""
    from cutover.demo import DemoError, run_demo

    try:
        run_demo(stop_after_s=seconds)
    except DemoError as error:
        typer.echo(f"cutover demo: {error}", err=True)
        raise typer.Exit(1) from None


@app.command("check")
def check() -> None:
    """Check Kafka (produce/consume round trip) and ClickHouse (a query) with the current settings."""
    settings = load(CutoverSettings)
    seconds = round_trip(KafkaConnection.from_settings(settings), timeout=20)
    typer.echo(
        f"Kafka round trip OK ({settings.kafka_bootstrap}, {settings.kafka_security_protocol}, {seconds * 1000:.0f} ms)"
    )
    version = ping(client_for(settings))
    typer.echo(f"ClickHouse OK ({settings.clickhouse_dsn}, version {version})")


def main() -> None:
    try:
        app()
    except SettingsError as exit_:
        sys.exit(exit_.code)
    except (BrokerError, StoreBusy) as error:
        print(f"cutover: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
