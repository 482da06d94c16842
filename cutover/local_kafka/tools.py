"""The JDK and the broker's jars: found or fetched (Maven Central through `mvn` and the pinned pom)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
POM = HERE / "pom.xml"
LOG4J = HERE / "log4j2.yaml"


class BrokerError(RuntimeError):
    """The local broker cannot be installed, started or reached; the message says why."""


def require_tools() -> tuple[str, str]:
    """`java` (17+) and `mvn` paths, or a BrokerError naming what to install."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        missing = [name for name, path in (("java (JDK 17+)", java), ("mvn (Apache Maven)", mvn)) if not path]
        raise BrokerError(
            f"the local Kafka broker needs {' and '.join(missing)} on PATH; "
            "install them (Debian: apt-get install openjdk-17-jdk-headless maven)"
        )
    banner = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)', banner)
    if not found or int(found.group(1)) < 17:
        raise BrokerError(f"the local Kafka broker needs Java 17 or newer; `java -version` says: {banner.strip()[:80]}")
    return java, mvn


def ensure_jars(libs: Path) -> Path:
    """Copy the pinned broker jars into `libs` once per version of the pom."""
    _, mvn = require_tools()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    stamp = libs / f".pom-{digest}"
    if stamp.exists():
        return libs
    if libs.exists():
        shutil.rmtree(libs)
    libs.mkdir(parents=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BrokerError(f"mvn could not fetch the Kafka jars:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    stamp.touch()
    return libs


def java_command(libs: Path, heap: str, *args: str) -> list[str]:
    """A JVM on the broker's classpath with our log4j2 configuration."""
    java, _ = require_tools()
    return [java, f"-Xmx{heap}", f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{libs}/*", *args]
