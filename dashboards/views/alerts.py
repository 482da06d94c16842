"""Alerts: every alert the processors raised in the range, newest first."""

from __future__ import annotations

import streamlit as st

from dashboards import context, filters, queries

st.title("Alerts")
f = filters.current()
table = queries.alerts(context.client(), context.database(), f)
if table.empty:
    st.success("No alerts in this range.", icon=":material/check_circle:")
else:
    counts = table.groupby("severity").size()
    cols = st.columns(max(len(counts), 1))
    for col, (severity, n) in zip(cols, counts.items(), strict=True):
        col.metric(f"{severity} alerts", f"{n:,}")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={"alert_time": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss")},
    )
