"""The Streamlit entry point (`cutover dashboard`): sidebar filters, then the selected page."""

from __future__ import annotations

import streamlit as st
from clickhouse_connect.driver.exceptions import ClickHouseError

from dashboards import context, filters, freshness

st.set_page_config(page_title="LLM cutover", page_icon=":material/compare_arrows:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", url_path="home", default=True),
    st.Page("views/latency.py", title="Latency", icon=":material/timer:", url_path="latency"),
    st.Page("views/cost.py", title="Cost and tokens", icon=":material/payments:", url_path="cost"),
    st.Page("views/quality.py", title="Quality", icon=":material/fact_check:", url_path="quality"),
    st.Page("views/shadow.py", title="Shadow comparison", icon=":material/difference:", url_path="shadow"),
    st.Page("views/readiness.py", title="Cutover readiness", icon=":material/rule:", url_path="readiness"),
    st.Page("views/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page("views/sql_explorer.py", title="SQL explorer", icon=":material/database:", url_path="sql"),
]


def _to_overview() -> None:
    st.switch_page(PAGES[0])


# The default page is served at "/" only, and reserves its url_path ("home", linked nowhere): a hidden
# page answers `/overview`, the Overview's name, instead of Streamlit's "Page not found" dialog.
page = st.navigation([*PAGES, st.Page(_to_overview, title="Overview", url_path="overview", visibility="hidden")])
try:
    filters.sidebar()
    freshness.banner()
    page.run()
except ClickHouseError as error:
    context.store_error(error)
