"""The only package that imports Streamlit: cached loaders, shared widgets and job polling."""
