"""Reporting: plots from metrics.jsonl (one figure-saving helper), seed tables with 95% intervals, the suppression report."""
