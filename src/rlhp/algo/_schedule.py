"""The frame schedules the algorithms share: linear annealing (lr, clip_eps, epsilon, PER's
beta) and how many gradient steps an off-policy agent owes at a frame (DQN, SAC)."""

import numpy as np


def linear(start: float, end: float, step: int | np.ndarray, end_step: int) -> float | np.ndarray:
    """`start` at step 0, linearly to `end` at `end_step`, then `end`; progress is
    min(step / end_step, 1). Elementwise over an array of steps; a float for one step."""
    progress = np.minimum(np.asarray(step) / end_step, 1.0)
    value = start + progress * (end - start)
    return value if isinstance(step, np.ndarray) else float(value)


def crossed(last: int, frame: int, every: int) -> int:
    """How many multiples of `every` lie in (last, frame]: the times an every-`every`-frames
    event is due when the frame count moves from `last` to `frame`."""
    return frame // every - last // every


def updates_due(
    last: int, frame: int, learning_starts: int, training_frequency: int, training_iter: int
) -> int:
    """Gradient steps due when the frame count moves from `last` to `frame`: `training_iter`
    each time a multiple of `training_frequency` is crossed, none before `learning_starts`."""
    if frame < learning_starts:
        return 0
    return crossed(last, frame, training_frequency) * training_iter
