"""Scoring.

Metrics, evaluation against a pixel reference, and the benchmark with its whole-pair scoring.
"""
