"""initviz: the page. Layout and widgets only; the computation lives in the initviz package."""

import streamlit as st

from initviz import NetworkSpec, profile

st.set_page_config(page_title="initviz", layout="wide")
st.title("initviz")
result = profile(NetworkSpec.stack(256, 20), batch=256)
st.dataframe(result.layers)
