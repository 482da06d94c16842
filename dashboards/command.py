"""`cutover dashboard`: serve the Streamlit app with the dashboard settings."""

from __future__ import annotations

import typer

from cutover.settings import load


def dashboard(
    port: int | None = typer.Option(None, help="Port (default: CUTOVER_DASHBOARD_PORT)."),
    host: str | None = typer.Option(None, help="Address (default: CUTOVER_DASHBOARD_HOST)."),
) -> None:
    """Serve the live model-comparison dashboard (Streamlit; reads ClickHouse only)."""
    from dashboards.server import serve
    from dashboards.settings import DashboardSettings

    settings = load(DashboardSettings)
    port, host = port or settings.dashboard_port, host or settings.dashboard_host
    typer.echo(f"dashboard on http://{host}:{port} (ClickHouse {settings.clickhouse_dsn}, database {settings.clickhouse_database})")
    serve(settings, port=port, host=host)
