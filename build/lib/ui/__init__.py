"""The Streamlit app: it shows, it never trains."""
