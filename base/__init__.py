"""The bottom layer: configuration, the error hierarchy, logging, redaction, metrics, tracing.

Everything else imports from here; this package imports nothing of Threadline's above it
(enforced by the import-linter contracts in ``pyproject.toml``).
"""
