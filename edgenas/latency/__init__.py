"""Latency look-up tables, the vectorised predictor and calibration from measurements."""
