"""Hydra sweeper plugin `hydra/sweeper=rlhp`; the implementation lives in rlhp.sweep."""
