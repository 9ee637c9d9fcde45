"""rlhp: hyperparameter search for deep reinforcement learning, as a Hydra application."""

__version__ = "0.1.0"
