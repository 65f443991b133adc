"""The floorsight Streamlit app: the pages quality engineers and maintenance live in.

Run with ``floorsight dashboard --db PATH`` (or ``streamlit run dashboards/app.py -- --db PATH``
[``--mlflow URI``] [``--users FILE``]). This script is the router: it signs the person in
(``auth.sign_in``: nothing else is drawn before), sets up the page and hands over to one of
the pages (``page_*.py`` beside it). Every page reads the database in short read-only
snapshots and refreshes its live parts by itself; writes (alert actions) go through
``dashboards/actions.py``, which checks the signed-in user's role, and
``floorsight.alerts.lifecycle``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from floorsight.dashboards.auth import sign_in
from floorsight.dashboards.common import database, waiting_for

HERE = Path(__file__).parent

#: (script, title, URL path, icon): the pages in the order of the navigation.
PAGES = (
    ("page_overview.py", "Plant overview", "overview", ":material/factory:"),
    ("page_alerts.py", "Alerts inbox", "alerts", ":material/notifications:"),
    ("page_spc.py", "SPC", "spc", ":material/show_chart:"),
    ("page_drift.py", "Drift", "drift", ":material/compare_arrows:"),
    ("page_models.py", "Predictions and models", "models", ":material/model_training:"),
    ("page_traceability.py", "Traceability", "traceability", ":material/account_tree:"),
    ("page_data_quality.py", "Data quality", "data-quality", ":material/fact_check:"),
)


def main() -> None:
    st.set_page_config(page_title="floorsight", layout="wide")
    pages = [
        st.Page(HERE / script, title=title, url_path=url, icon=icon, default=i == 0)
        for i, (script, title, url, icon) in enumerate(PAGES)
    ]
    # navigation first, before the sign-in form: it fixes the page the link asked for (e.g.
    # /alerts?alert=...) for the browser, so the reruns of signing in stay on it; the menu is
    # hidden until someone is signed in, and no page runs before
    signed_in = st.session_state.get("authentication_status") is True
    page = st.navigation(pages, position="sidebar" if signed_in else "hidden")
    if sign_in() is None:
        return
    db = database()
    if waiting_for(db):
        st.title("floorsight")
        return
    page.run()


main()
