"""Knowledge distillation: a finished classifier run (the teacher), frozen, scores every training
batch, and the student learns from those scores as well as from the labels (Hinton et al. 2015;
the hard variant is DeiT's, Touvron et al. 2021, where a convnet teacher lends a transformer its
locality prior on small data)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError, DataError


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
    """The frozen net of a finished ``archbench-train`` run folder (its config.yaml, run.json and
    checkpoints/best.ckpt), refused in one line unless it was trained on the same prepared data."""
    from omegaconf import OmegaConf

    folder = Path(folder)
    files = [folder / "config.yaml", folder / "run.json", folder / "checkpoints" / "best.ckpt"]
    missing = [str(p.relative_to(folder)) for p in files if not p.is_file()]
    if missing:
        seeds = sorted(p.name for p in folder.glob("seed*") if (p / "run.json").is_file())
        hint = (f"; it holds seed replicates: name one, e.g. {folder / seeds[0]} (or {folder}/seed${{seed}})"
                if seeds else "; train the teacher first")
        raise DataError(f"distill.teacher={folder}: not a finished archbench-train run folder "
                        f"(missing {', '.join(missing)}){hint}")
    run = json.loads(files[1].read_text())
    if run.get("status") != "finished":
        raise ConfigError(f"distill.teacher={folder}: that run's status is {run.get('status')!r}, not finished")
    if run.get("data_checksum") != data_checksum:
        raise ConfigError(f"distill.teacher={folder}: trained on {run.get('data')} prepared as "
                          f"{str(run.get('data_checksum'))[:19]}…, not this run's {data_checksum[:19]}…; "
                          f"a teacher must have seen the same prepared data")
    net = build_net(OmegaConf.load(files[0]))
    state = torch.load(files[2], map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    return net.eval().requires_grad_(False)
