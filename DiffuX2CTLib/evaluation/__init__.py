"""Evaluation: metrics, and the held-out sets scored method by method."""
