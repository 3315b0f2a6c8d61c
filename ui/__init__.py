"""The page's parts, in Streamlit: the link (links), the sidebar (sidebar), the sections
(sections) and the training race (race). ``app.py`` lays them out; computation stays in
``initviz/``, which never imports Streamlit."""
