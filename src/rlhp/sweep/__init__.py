"""The rlhp sweeper implementation (loaded lazily by hydra_plugins.rlhp_sweeper)."""
