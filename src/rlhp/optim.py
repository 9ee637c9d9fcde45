"""Optimisers for stacked members: Adam and RMSprop over a flat [K, P] parameter buffer, with a
learning rate and a gradient-norm clip per member.

`torch.optim.Adam` takes one scalar lr and `clip_grad_norm_` one norm over every tensor it is
given, which would couple the members; these do the same arithmetic as torch's, row by row.
"""

import torch


def clip_grad_norm(grad: torch.Tensor, max_norm: torch.Tensor) -> torch.Tensor:
    """Scale each member's gradient row to norm <= max_norm[k] (inf: no clipping), as
    `torch.nn.utils.clip_grad_norm_` does for one model; returns the norms before clipping."""
    norm = grad.norm(dim=1)
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    grad.mul_(coef.unsqueeze(1))
    return norm


def step_rows(step, state: tuple[torch.Tensor, ...], lr: torch.Tensor, mask: torch.Tensor | None):
    """`step(*state, lr)` on the [K, ...] tensors `state`, or on the rows of the members in
    `mask` only (the others untouched)."""
    if mask is None:
        step(*state, lr)
        return
    rows = mask.nonzero().squeeze(1)
    part = [x[rows] for x in state]
    step(*part, lr[rows])
    for x, new in zip(state, part, strict=True):
        x[rows] = new


class StackedAdam:
    """Adam (Kingma & Ba 2015) as torch.optim.Adam computes it, with lr [K] and a step count per
    member (a member put in a freed slot starts its bias correction afresh)."""

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, betas=(0.9, 0.999), eps=1e-5):
        self.flat, self.grad, self.betas, self.eps = flat, grad, betas, eps
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.steps = torch.zeros(flat.shape[0], 1, dtype=flat.dtype, device=flat.device)
        self.update = torch.empty_like(flat)  # the step's scratch: no [K, P] allocated per step

    @torch.no_grad()
    def step(self, lr: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """One step of every member, or (mask: [K] bool) of those in mask only: the others'
        weights and moments stay as they are, as if they had not stepped."""
        state = (self.flat, self.grad, self.exp_avg, self.exp_avg_sq, self.steps)
        step_rows(self._step, state, lr, mask)

    def _step(self, flat, grad, exp_avg, exp_avg_sq, steps, lr: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        steps += 1
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr.unsqueeze(1) / (1 - beta1**steps)
        bias_correction2_sqrt = (1 - beta2**steps).sqrt()
        # flat -= step_size * exp_avg / (sqrt(exp_avg_sq) / bc2 + eps), with bc2 moved out of
        # the denominator: four passes over [K, P] in place (memory-bound on a CPU)
        update = self.update if flat is self.flat else torch.empty_like(flat)
        torch.sqrt(exp_avg_sq, out=update).add_(self.eps * bias_correction2_sqrt)
        torch.div(exp_avg, update, out=update)
        flat.addcmul_(update, step_size * bias_correction2_sqrt, value=-1)

    def reset_member(self, k: int) -> None:
        self.exp_avg[k] = 0.0
        self.exp_avg_sq[k] = 0.0
        self.steps[k] = 0.0

    def member_state(self, k: int) -> dict:
        return {"exp_avg": self.exp_avg[k].clone(), "exp_avg_sq": self.exp_avg_sq[k].clone(),
                "steps": self.steps[k].clone()}  # fmt: skip

    def load_member_state(self, k: int, state: dict) -> None:
        for key, value in state.items():
            getattr(self, key)[k] = value.to(self.flat.device)


class StackedRMSprop:
    """RMSprop as torch.optim.RMSprop computes it (no momentum, not centred), lr [K]."""

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, alpha=0.99, eps=1e-5):
        self.flat, self.grad, self.alpha, self.eps = flat, grad, alpha, eps
        self.square_avg = torch.zeros_like(flat)

    @torch.no_grad()
    def step(self, lr: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """As StackedAdam.step: every member, or those in mask only."""
        step_rows(self._step, (self.flat, self.grad, self.square_avg), lr, mask)

    def _step(self, flat, grad, square_avg, lr: torch.Tensor) -> None:
        square_avg.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
        flat.sub_(lr.unsqueeze(1) * grad / square_avg.sqrt().add_(self.eps))

    def reset_member(self, k: int) -> None:
        self.square_avg[k] = 0.0

    def member_state(self, k: int) -> dict:
        return {"square_avg": self.square_avg[k].clone()}

    def load_member_state(self, k: int, state: dict) -> None:
        self.square_avg[k] = state["square_avg"].to(self.flat.device)


def make(name: str, flat: torch.Tensor, grad: torch.Tensor) -> StackedAdam | StackedRMSprop:
    """`adam` (eps 1e-5, as PPO implementations use) or `rmsprop` (alpha 0.99, eps 1e-5: A2C)."""
    if name == "adam":
        return StackedAdam(flat, grad)
    if name == "rmsprop":
        return StackedRMSprop(flat, grad)
    raise ValueError(f"optimizer must be adam or rmsprop, got {name!r}")
