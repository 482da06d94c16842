"""Interop harness: each GenAI instrumentation library in its own virtualenv, from PyPI.

    python scripts/interop.py install [--jobs N] [LIBRARY ...]     # all when none named
    python scripts/interop.py run LIBRARY --simulator URL --collector URL [--calls N]

`install` makes `.cutover/interop/<library>` with the library, the real `openai` SDK and the
OTel SDK + OTLP/HTTP exporter, pinned as below; the pins of a library that conflict with ours
are its business, so it never shares our venv. A venv whose requirements did not change is
reused. `run` executes `scripts/interop_driver.py` in that venv and prints the driver's JSON
lines (the ground truth per call). tests/test_interop.py drives both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / ".cutover" / "interop"
DRIVER = REPO / "scripts" / "interop_driver.py"
COMMON = ["openai>=1.100,<3", "opentelemetry-sdk>=1.30", "opentelemetry-exporter-otlp-proto-http>=1.30"]
# library -> its own requirements (the versions issue 10 was reported against)
LIBRARIES: dict[str, list[str]] = {
    "official": ["opentelemetry-instrumentation-genai-openai==1.3b0"],
    # 2.4b0 imports `opentelemetry.util.genai.instruments`, which util-genai 1.2b0 renamed
    "openai-v2": ["opentelemetry-instrumentation-openai-v2==2.4b0", "opentelemetry-util-genai==1.1b0"],
    "openllmetry-0.62": ["opentelemetry-instrumentation-openai==0.62.4"],
    # 0.47.5 imports the Events API (`opentelemetry._events`), which opentelemetry-api dropped after 1.38
    "openllmetry-0.47": ["opentelemetry-instrumentation-openai==0.47.5", "opentelemetry-sdk==1.38.0"],
    "openlit": ["openlit==1.45.0"],
    "openinference": ["openinference-instrumentation-openai==0.1.66"],
    "logfire": ["logfire==5.4.0"],
}


def python_of(library: str) -> Path:
    return ROOT / library / "bin" / "python"


def install(library: str) -> Path:
    """The venv's python, (re)installing the library when its requirements changed."""
    requirements = [*LIBRARIES[library], *COMMON]
    digest = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()
    home = ROOT / library
    marker = home / ".requirements"
    if marker.exists() and marker.read_text() == digest and python_of(library).exists():
        return python_of(library)
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    subprocess.run(
        [str(python_of(library)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True,
    )
    marker.write_text(digest)
    return python_of(library)


def run(library: str, simulator: str, collector: str, calls: int) -> list[dict[str, object]]:
    """Ground truth per call, as the driver in the library's venv saw it."""
    done = subprocess.run(
        [
            str(install(library)),
            str(DRIVER),
            library,
            "--simulator",
            simulator,
            "--collector",
            collector,
            "--calls",
            str(calls),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"the {library} driver failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    installing = commands.add_parser("install")
    installing.add_argument("libraries", nargs="*", help=f"any of {', '.join(LIBRARIES)} (default: all)")
    # pip mostly waits on downloads, so a few venvs at once halve a fresh machine's install
    installing.add_argument("--jobs", type=int, default=3, help="venvs installed at once (default 3)")
    running = commands.add_parser("run")
    running.add_argument("library", choices=list(LIBRARIES))
    running.add_argument("--simulator", required=True)
    running.add_argument("--collector", required=True)
    running.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    if args.command == "install":
        unknown = sorted(set(args.libraries) - set(LIBRARIES))
        if unknown:
            parser.error(f"unknown libraries {unknown}; known: {', '.join(LIBRARIES)}")
        started = time.monotonic()

        def timed(library: str) -> str:
            begun = time.monotonic()
            python = install(library)
            return f"{library}: {python} ({time.monotonic() - begun:.0f} s)"

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for line in pool.map(timed, args.libraries or list(LIBRARIES)):
                print(line, flush=True)
        print(f"interop venvs ready in {time.monotonic() - started:.0f} s", flush=True)
    else:
        for truth in run(args.library, args.simulator, args.collector, args.calls):
            print(json.dumps(truth))


if __name__ == "__main__":
    main()
