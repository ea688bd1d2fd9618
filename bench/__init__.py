"""Benchmarks: run by hand or in CI as a report, never as timed assertions."""
