"""Prefect flows: they compose tasks and pass small typed records between them."""
