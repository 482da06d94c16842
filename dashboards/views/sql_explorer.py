"""SQL explorer: read-only SQL, enforced by ClickHouse (`readonly=1` on the query), with docs/sql.md examples."""

from __future__ import annotations

import streamlit as st

from dashboards import context, queries

st.title("SQL explorer")
settings = context.settings()
st.caption(
    f"Read-only: ClickHouse runs every query here with `readonly=1`, so writes, DDL, SYSTEM and table functions "
    f"such as `file()` and `url()` are refused. Database `{settings.clickhouse_database}`; at most "
    f"{settings.dashboard_sql_row_limit:,} rows and {settings.dashboard_sql_timeout_s} s per query."
)

examples = queries.example_queries(settings.clickhouse_database)
if examples:
    st.subheader("Examples from docs/sql.md")
    cols = st.columns(3)
    for i, (title, sql) in enumerate(examples):
        if cols[i % 3].button(title, key=f"example_{i}", width="stretch"):
            st.session_state["sql"] = sql
else:
    st.caption("No example queries found (docs/sql.md).")

st.session_state.setdefault(
    "sql",
    f"SELECT model, count() AS calls, round(avg(latency_ms)) AS mean_latency_ms\n"
    f"FROM {settings.clickhouse_database}.llm_calls FINAL\nWHERE start_time > now() - INTERVAL 1 HOUR\nGROUP BY model\nORDER BY calls DESC",
)
st.text_area("SQL", key="sql", height=200)
if st.button("Run", type="primary", key="run_sql"):
    try:
        result = queries.run_readonly(
            settings.clickhouse_dsn,
            st.session_state["sql"],
            settings.dashboard_sql_row_limit,
            settings.dashboard_sql_timeout_s,
        )
    except queries.ReadOnlyRefused as refused:
        st.error(
            "Refused: the SQL explorer is read-only. It runs one query that returns rows (SELECT, WITH, SHOW, "
            "DESCRIBE, EXISTS, EXPLAIN) under ClickHouse's readonly=1, which rejects anything that would change data, "
            f"schema or server state, or read outside the database (file(), url() and other table functions). "
            f"Nothing was changed. ({refused})",
            icon=":material/block:",
        )
        st.code(str(refused).strip().splitlines()[0], language=None)
    except Exception as error:  # any ClickHouse error is shown to the user as is
        st.error(f"ClickHouse error: {str(error).strip().splitlines()[0]}", icon=":material/error:")
    else:
        frame = result.frame
        note = f" (truncated at {settings.dashboard_sql_row_limit:,})" if result.truncated else ""
        st.caption(f"{len(frame):,} rows{note}")
        st.dataframe(frame, hide_index=True, width="stretch")
        st.download_button(
            "Download CSV", frame.to_csv(index=False), file_name="cutover-query.csv", mime="text/csv", key="csv"
        )
