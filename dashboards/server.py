"""Serve the dashboard from this process, so a processor thread can share the chDB client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dashboards import context
from dashboards.settings import DashboardSettings

APP = Path(__file__).resolve().parent / "app.py"


def serve(
    settings: DashboardSettings,
    port: int = 8501,
    host: str = "127.0.0.1",
    on_start: Callable[[], None] | None = None,
) -> None:
    """Run the Streamlit app in this process until interrupted.

    `on_start` runs once the configuration is loaded, just before the server starts
    (e.g. to start a processor thread on the same shared client).
    """
    from streamlit.web import bootstrap

    context.use(settings)
    flags = {
        "server.port": port,
        "server.address": host,
        "server.headless": True,
        "server.runOnSave": False,
        "server.fileWatcherType": "none",
        "server.enableAgentApi": settings.dashboard_agent_api,
        "browser.gatherUsageStats": False,
        "client.toolbarMode": "viewer",
        # Tableau 10: neighbouring models get clearly different hues (the default palette is shades of blue).
        "theme.chartCategoricalColors": [
            "#4e79a7",
            "#f28e2b",
            "#e15759",
            "#76b7b2",
            "#59a14f",
            "#edc948",
            "#b07aa1",
            "#ff9da7",
            "#9c755f",
            "#bab0ac",
        ],
    }
    bootstrap.load_config_options(flag_options=flags)
    if on_start is not None:
        on_start()
    bootstrap.run(str(APP), False, [], flags)
