"""The bottom layer: configuration, the error hierarchy, logging, redaction, metrics, tracing,
shortening text for one-line displays (``text``).

Everything else imports from here; this package imports nothing of Threadline's above it
(enforced by the import-linter contracts in ``pyproject.toml``).
"""
