"""The baseline page of ``bench_browser.py``: one slider, one chart, nothing computed.

It is served, loaded and changed exactly as the app is (same server flags, same ``.streamlit``
configuration, same browser), so the app's figures divided by this page's say what the app adds
to the cost of any Streamlit page on the same machine at the same minute. The slider has the
app's depth slider's key, range, default and URL binding, and the chart is drawn through
``st.vega_lite_chart`` with the data sent as Arrow, as the app draws its charts.

    streamlit run benchmarks/minimal_app.py
"""

import pandas as pd
import streamlit as st

depth = st.slider("depth (hidden layers)", 1, 200, 20, key="depth", bind="query-params")
st.vega_lite_chart(
    pd.DataFrame({"layer": range(1, depth + 1), "value": [0.5 ** layer for layer in
                                                           range(1, depth + 1)]}),
    {"mark": "line", "encoding": {"x": {"field": "layer", "type": "quantitative"},
                                  "y": {"field": "value", "type": "quantitative",
                                        "scale": {"type": "log"}}}})
