"""Fingerspell web app: ``make app``, or
``streamlit run ui/app.py --server.address 127.0.0.1 --browser.gatherUsageStats false``.

Pages live in ``ui/views/`` (not ``pages/``: Streamlit would also list that folder itself);
this entry point only sets the page up and navigates.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `streamlit run ui/app.py` puts ui/ first on sys.path; the project root must be importable too.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tasks.core.settings import QUIET_ENV  # noqa: E402

for _key, _value in QUIET_ENV.items():
    os.environ.setdefault(_key, _value)
# A dead tracking server must not hang a page for minutes in MLflow's retry loop.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import streamlit as st  # noqa: E402

from ui.shared_model import model_switch  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="Fingerspell", page_icon=":material/sign_language:", layout="wide")
navigation = st.navigation(
    [
        st.Page(VIEWS / "live.py", title="Live", icon=":material/videocam:", default=True),
        st.Page(VIEWS / "practice.py", title="Practice", icon=":material/target:"),
        st.Page(VIEWS / "teach.py", title="Teach", icon=":material/front_hand:"),
        st.Page(VIEWS / "upload.py", title="Upload", icon=":material/image:"),
        st.Page(VIEWS / "model.py", title="Model", icon=":material/bar_chart:"),
    ]
)
with st.sidebar:
    # Every page recognizes with this session's model: say which, and offer the other one.
    model_switch("sidebar_model")
navigation.run()
