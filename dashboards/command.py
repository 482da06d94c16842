"""`cutover dashboard`: serve the Streamlit app with the dashboard settings."""

from __future__ import annotations

import typer

from cutover.settings import load


def dashboard(
    port: int | None = typer.Option(None, help="Port (default: CUTOVER_DASHBOARD_PORT)."),
    host: str | None = typer.Option(None, help="Address (default: CUTOVER_DASHBOARD_HOST)."),
    processor: bool | None = typer.Option(
        None,
        "--processor/--no-processor",
        help="Run the processor in this process too (default: yes on chdb://, where no other process can open the store).",
    ),
) -> None:
    """Serve the live model-comparison dashboard (Streamlit; reads ClickHouse only)."""
    from dashboards.server import serve
    from dashboards.settings import DashboardSettings

    settings = load(DashboardSettings)
    port, host = port or settings.dashboard_port, host or settings.dashboard_host
    typer.echo(
        f"dashboard on http://{host}:{port} (ClickHouse {settings.clickhouse_dsn}, database {settings.clickhouse_database})"
    )
    if not (settings.uses_chdb if processor is None else processor):
        serve(settings, port=port, host=host)
        return
    from cutover.logs import setup_logging
    from processors.service import ProcessorService
    from processors.settings import ProcessorSettings

    processor_settings = load(ProcessorSettings)
    setup_logging(processor_settings.log_level)
    service = ProcessorService(processor_settings)
    typer.echo("processor running in this process (shared ClickHouse client)")
    try:
        serve(settings, port=port, host=host, on_start=service.start)
    finally:
        service.stop()
