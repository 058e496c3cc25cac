"""Shared ground: records, settings and file helpers every stage uses."""
