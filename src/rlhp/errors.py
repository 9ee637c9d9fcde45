"""Errors a user can fix: reported as one line before anything is launched."""


class ConfigError(ValueError):
    """The composed configuration cannot run (unknown env, bad value, algo/env mismatch)."""
