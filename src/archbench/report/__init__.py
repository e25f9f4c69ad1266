"""Comparison tables and plots built from the pipeline's per-run metrics."""
