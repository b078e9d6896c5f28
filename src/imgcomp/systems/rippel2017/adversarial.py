"""Multiscale adversarial training of Rippel & Bourdev 2017 (sec. 4, Fig. 10). Training only:
nothing on the compress/decompress path imports this module.

- :class:`MultiscaleDiscriminator` (sec. 4.1): the target and its reconstruction form one example;
  after a random swap (:func:`swap_pairs`) the discriminator is asked which of the two is the real
  target. Both images of the pair go through the same stack of stride-2 stages (a feature
  pyramid); at every stage a branch (conv 1x1 over the two images' features side by side, spatial
  mean) gives one scalar. The branches' scalars are averaged into the logit that the terminal
  sigmoid turns into P(the first image is the target).
- :func:`balanced_weight` (sec. 4.2, first adaptation): the weight that scales the confusion
  gradient to ``ratio`` x the reconstruction gradient's magnitude.
- :class:`AccuracyGate` (sec. 4.2, second adaptation): a running accuracy of the discriminator
  (momentum over mini-batches) and the choice, each step, between training the discriminator
  (accuracy below the lower bound), propagating the confusion signal into the codec (above the
  upper bound), or alternating between the two (in between).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

TRAIN_D = "discriminator"
CONFUSE = "confusion"
SLOPE = 0.2


class MultiscaleDiscriminator(nn.Module):
    """(first, second) images on the 0-255 scale -> the logit that ``first`` is the real target.

    Stage s (``channels[s]`` channels) is a conv 3x3 with stride 2 and a conv 3x3, each followed by
    leaky ReLU(0.2), applied to each image alone (shared weights); its branch is a conv 1x1 from
    both images' stage-s features (2 x ``channels[s]``) to one channel, averaged over the positions.
    (A first version fed the pair as 6 input channels to one stack: on crops of the cpu model's
    reconstructions it stayed near chance for 400 steps, where this one reaches 100% in about 100.)"""

    def __init__(self, channels: list[int]):
        super().__init__()
        if not channels or min(channels) < 1:
            raise ValueError("the discriminator needs at least one stage with >= 1 channel")
        stages, branches, cin = [], [], 3
        for cout in channels:
            stages.append(nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(SLOPE, inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(SLOPE, inplace=True),
            ))
            branches.append(nn.Conv2d(2 * cout, 1, 1))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.branches = nn.ModuleList(branches)

    def branch_outputs(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """One scalar per example and stage, shape (N, stages)."""
        n = first.shape[0]
        h = torch.cat([first, second], dim=0) / 127.5 - 1.0
        outputs = []
        for stage, branch in zip(self.stages, self.branches):
            h = stage(h)
            outputs.append(branch(torch.cat([h[:n], h[n:]], dim=1)).mean(dim=(1, 2, 3)))
        return torch.stack(outputs, dim=1)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """The logit (N,): the average of the branch outputs (the sigmoid is in the loss)."""
        return self.branch_outputs(first, second).mean(dim=1)


def swap_pairs(
    target: torch.Tensor, reconstruction: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Swap target and reconstruction in each pair with probability 1/2 (sec. 4.1).

    Returns ``(first, second, label)``; ``label`` is 1.0 where ``first`` is the target."""
    label = torch.randint(0, 2, (target.shape[0],), generator=generator).to(target.device, target.dtype)
    keep = label.view(-1, 1, 1, 1)
    first = keep * target + (1.0 - keep) * reconstruction
    second = keep * reconstruction + (1.0 - keep) * target
    return first, second, label


def discriminator_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the terminal sigmoid against which image is the target."""
    return F.binary_cross_entropy_with_logits(logits, label)


def confusion_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The codec's confusion signal: the cross-entropy against the flipped labels (the
    discriminator should take the reconstruction for the target)."""
    return F.binary_cross_entropy_with_logits(logits, 1.0 - label)


def accuracy(logits: torch.Tensor, label: torch.Tensor) -> float:
    """The fraction of pairs whose target the discriminator found."""
    return float(((logits.detach() > 0).to(label.dtype) == label).float().mean())


def balanced_weight(
    reconstruction_loss: torch.Tensor, confusion: torch.Tensor, wrt: torch.Tensor, ratio: float, eps: float = 1e-12
) -> float:
    """The weight w such that ``|d(w * confusion)/d wrt| = ratio * |d reconstruction_loss / d wrt|``
    (L2 norms; sec. 4.2: the two gradients are balanced by their magnitudes). Both graphs are kept."""
    g_rec, = torch.autograd.grad(reconstruction_loss, wrt, retain_graph=True)
    g_adv, = torch.autograd.grad(confusion, wrt, retain_graph=True)
    return float(ratio * g_rec.norm() / (g_adv.norm() + eps))


class AccuracyGate:
    """The discriminator's running accuracy and the branch each step takes (sec. 4.2).

    ``a < low``: train the discriminator, no confusion signal; ``a > high``: propagate the confusion
    signal, the discriminator frozen; otherwise alternate with the previous step's branch."""

    def __init__(self, low: float, high: float, momentum: float, start: float = 0.5):
        if not 0.0 <= low <= high <= 1.0 or not 0.0 <= momentum < 1.0:
            raise ValueError("need 0 <= low <= high <= 1 and 0 <= momentum < 1")
        self.low, self.high, self.momentum = low, high, momentum
        self.accuracy = start
        self.last = CONFUSE  # so that the first step in the band trains the discriminator

    def branch(self) -> str:
        if self.accuracy < self.low:
            return TRAIN_D
        if self.accuracy > self.high:
            return CONFUSE
        return TRAIN_D if self.last == CONFUSE else CONFUSE

    def choose(self) -> str:
        """The branch of this step (remembered for the alternation)."""
        self.last = self.branch()
        return self.last

    def update(self, batch_accuracy: float) -> float:
        """Fold one mini-batch's accuracy into the running average; returns it."""
        self.accuracy = self.momentum * self.accuracy + (1.0 - self.momentum) * batch_accuracy
        return self.accuracy

    def state_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accuracy, self.last = float(state["accuracy"]), str(state["last"])
