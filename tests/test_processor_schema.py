from processors.schema import RETENTION, migrate


def ttl_of(client, database: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = %(db)s", parameters={"db": database}
    ).result_rows
    return {name: engine for name, engine in rows if name in RETENTION}


def test_migrate_is_idempotent_and_follows_a_retention_change(ch_client, ch_database):
    migrate(ch_client, ch_database, retention_days=90)
    migrate(ch_client, ch_database, retention_days=90)
    tables = {row[0] for row in ch_client.query(f"SHOW TABLES FROM {ch_database}").result_rows}
    assert {"llm_calls", "hallucination_flags", "latency_histograms", "alerts"} <= tables
    assert all("toIntervalDay(90)" in engine for engine in ttl_of(ch_client, ch_database).values())

    migrate(ch_client, ch_database, retention_days=7)
    assert all("toIntervalDay(7)" in engine for engine in ttl_of(ch_client, ch_database).values())

    migrate(ch_client, ch_database, retention_days=0)
    assert all(" TTL " not in engine for engine in ttl_of(ch_client, ch_database).values())
    migrate(ch_client, ch_database, retention_days=30)
    assert all("toIntervalDay(30)" in engine for engine in ttl_of(ch_client, ch_database).values())
