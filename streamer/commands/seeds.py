"""Placeholder removed by the seeds work."""
