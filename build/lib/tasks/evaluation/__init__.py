"""Evaluation: metrics on a split, detection matching, the report and its plots."""
