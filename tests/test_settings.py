import re
import subprocess
import sys
from pathlib import Path

import pytest

from cutover.settings import CutoverSettings, SettingsError, load
from tests.support import settings_variables

REPO = Path(__file__).resolve().parents[1]


def test_defaults_point_at_local_broker_and_embedded_store(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CUTOVER_"):
            monkeypatch.delenv(name)
    settings = load(CutoverSettings)
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.spans_topic == "otlp_spans"
    assert settings.dlq_topic == "otlp_spans_dlq"
    assert settings.consumer_group == "cutover-processor"
    assert settings.clickhouse_dsn == f"chdb://{(Path('.cutover') / 'chdb').resolve()}"
    assert settings.uses_chdb


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CUTOVER_KAFKA_BOOTSTRAP", "no-port-here"),
        ("CUTOVER_KAFKA_BOOTSTRAP", "host:99999"),
        ("CUTOVER_CLICKHOUSE_URL", "mysql://db:3306"),
        ("CUTOVER_CLICKHOUSE_URL", "chdb://"),
        ("CUTOVER_SPANS_TOPIC", "bad topic"),
    ],
)
def test_bad_value_is_one_clear_line_and_exit_2(variable, value, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cutover.cli", "check"],
        env={"PATH": "/usr/bin:/bin", variable: value, "CUTOVER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert variable in lines[0] and "Traceback" not in done.stderr


def test_load_raises_settings_error_with_code_2(monkeypatch):
    monkeypatch.setenv("CUTOVER_KAFKA_BOOTSTRAP", "")
    with pytest.raises(SettingsError) as raised:
        load(CutoverSettings)
    assert raised.value.code == 2


def test_every_setting_is_in_the_readme_configuration_table():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`(CUTOVER_[A-Z0-9_]+)`", readme, flags=re.M))
    declared = settings_variables()
    assert declared - documented == set(), "add these to the README configuration table"
    assert documented - declared == set(), "the README documents variables no settings class reads"
