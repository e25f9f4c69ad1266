"""Knowledge distillation: a finished classifier run (the teacher), frozen, scores every training
batch, and the student learns from those scores as well as from the labels (Hinton et al. 2015;
the hard variant is DeiT's, Touvron et al. 2021, where a convnet teacher lends a transformer its
locality prior on small data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from archbench.tasks.base import finished_run


@dataclass(frozen=True)
class Distillation:
    """``distill`` of the config: the teacher's run folder (None: off), the distillation term's
    weight in the loss, the softening temperature, and hard (the teacher's class as a label)."""

    teacher: str | None = None
    weight: float = 0.5
    temperature: float = 1.0
    hard: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> Distillation:
        section = dict(cfg.get("distill") or {})
        unknown = sorted(set(section) - {"teacher", "weight", "temperature", "hard"})
        if unknown:
            raise ConfigError(f"unknown distill key(s) {unknown}; valid: teacher, weight, temperature, hard")
        settings = cls(**section)
        if not 0.0 < settings.weight <= 1.0 or settings.temperature <= 0:
            raise ConfigError(f"distill.weight={settings.weight} must be in (0, 1] and "
                              f"distill.temperature={settings.temperature} above 0")
        return settings

    @property
    def enabled(self) -> bool:
        return self.teacher not in (None, "")


def two_class_logits(scores: torch.Tensor) -> torch.Tensor:
    """Scores as logits over classes: a lone logit s (sigmoid) is the softmax of [0, s]."""
    return torch.cat([torch.zeros_like(scores), scores], dim=-1) if scores.shape[-1] == 1 else scores


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                      hard: bool = False) -> torch.Tensor:
    """KL(teacher ‖ student) of the temperature-softened distributions, × T² so its gradients keep
    their scale as T changes (Hinton et al. 2015); hard: cross-entropy to the teacher's class."""
    student, teacher = two_class_logits(student), two_class_logits(teacher.detach())
    if hard:
        return F.cross_entropy(student, teacher.argmax(-1))
    t = float(temperature)
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1),
                    log_target=True, reduction="batchmean") * t * t


def load_teacher(folder: str | Path, data_checksum: str, build_net: Callable[[Any], nn.Module]) -> nn.Module:
    """The frozen net of a finished ``archbench-train`` run folder at the checkpoint it tested,
    rebuilt by ``build_net`` from the run's config; it must have seen exactly this prepared data."""
    cfg, _, weights = finished_run(folder, data_checksum, "distill.teacher")
    net = build_net(cfg)
    net.load_state_dict(weights)
    return net.eval().requires_grad_(False)
