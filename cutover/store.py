"""The one place that opens ClickHouse: clickhouse-connect on `chdb://` or `http(s)://`.

chDB runs one engine per process and per data path, so within a process every caller
shares one client per DSN (`client_for`), and two processes never open the same path:
that is why, on the embedded store, the processor and the dashboard share one process.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from cutover.memory import chdb_engine_options, configure_chdb_allocator
from cutover.settings import CutoverSettings

_clients: dict[str, Client] = {}
_lock = threading.Lock()


class StoreBusy(RuntimeError):
    """Another process holds this chDB data path; retrying cannot help while it runs."""


def open_client(dsn: str, settings: CutoverSettings | None = None) -> Client:
    """A new clickhouse-connect client for a `chdb://PATH` or `http(s)://host:port` DSN.

    On chdb:// the engine's memory options come from `settings` (default: the environment's);
    they take effect in the first engine of the process (cutover/memory.py)."""
    if dsn.startswith("chdb://"):
        path = Path(dsn.removeprefix("chdb://")).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        memory = settings or CutoverSettings()
        configure_chdb_allocator(memory.chdb_malloc_conf)
        try:
            return clickhouse_connect.get_client(
                dsn=f"chdb://{path}", chdb_options=chdb_engine_options(memory.chdb_cache_mb, memory.chdb_pool_threads)
            )
        except Exception as error:
            if "EmbeddedServer" not in str(error) or not _locked_by_another_process(path):
                raise
            raise StoreBusy(
                f"the chDB store {path} is open in another process (chDB runs one engine per data path); "
                "on chdb:// `cutover dashboard` already runs the processor: stop the other process, "
                "or use a ClickHouse server (CUTOVER_CLICKHOUSE_URL=http://…) to run them apart"
            ) from None
    url = urlparse(dsn)
    return clickhouse_connect.get_client(
        host=url.hostname,
        port=url.port or (8443 if url.scheme == "https" else 8123),
        secure=url.scheme == "https",
        username=url.username or "default",
        password=url.password or "",
        connect_timeout=5,
        send_receive_timeout=60,
    )


def _locked_by_another_process(path: Path) -> bool:
    """ClickHouse holds an exclusive flock on `status` in its data path while an engine runs there."""
    try:
        with (path / "status").open("a") as status:
            fcntl.flock(status, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(status, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def client_for(settings: CutoverSettings) -> Client:
    """The process-wide shared client for the configured store (chDB allows one engine per process)."""
    dsn = settings.clickhouse_dsn
    with _lock:
        client = _clients.get(dsn)
        if client is None:
            client = _clients[dsn] = open_client(dsn, settings)
        return client


def sibling(client: Client, dsn: str) -> Client:
    """Another client on `client`'s store (`dsn` unless it is a chDB path) with its own connection.

    Calls on one chDB handle (or HTTP session) run one at a time; a second handle to the
    same engine lets a background query run beside the first client's inserts.
    """
    return open_client(client.uri if client.uri.startswith("chdb://") else dsn)


def ping(client: Client) -> str:
    """The server's version string; raises if ClickHouse does not answer."""
    return str(client.command("SELECT version()"))
