"""Asynchronous successive halving (ASHA) shared through files by the trials of a sweep."""

from rlhp.asha._coordinator import Coordinator

__all__ = ["Coordinator"]
