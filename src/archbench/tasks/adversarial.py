"""Adversarial training of a generator against a discriminator (manual optimisation).

Per batch: one discriminator step on real + generated images, then (every ``d_steps`` batches) one
generator step with the non-saturating loss ``-log D(G(z))``. Sample quality is measured each
validation epoch as an FID against the real validation split, with features of a classifier
trained on the same data (``tasks/quality.py``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from archbench.tasks.base import Built, RunResult
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import build_optimizer
from archbench.tasks.quality import (
    FrozenClassifier,
    ImageGeneration,
    PixelSpace,
    class_coverage,
    fid,
)


class ImageSampler(nn.Module):
    """What archbench logs as a GAN model: noise ``(N, noise_dim)`` → images in [0, 1]."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return PixelSpace.to_unit(self.generator(z))


class AdversarialTask(TaskModule):
    """GAN training, FID/coverage evaluation and fixed-noise sample grids."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        classifier: FrozenClassifier,
        num_classes: int,
        noise_dim: int = 100,
        optimizer: dict[str, Any] | None = None,
        discriminator_lr_scale: float = 1.0,
        d_steps: int = 1,
        label_smoothing: float = 0.0,
        num_samples: int = 2000,
        coverage_min_share: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if d_steps < 1:
            raise ConfigError(f"model.d_steps must be ≥ 1, got {d_steps}")
        if not 0 <= label_smoothing < 0.5:
            raise ConfigError(f"model.label_smoothing must be in [0, 0.5), got {label_smoothing}")
        # plain values only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters(ignore=["generator", "discriminator", "classifier"])
        self.automatic_optimization = False
        self.generator, self.discriminator, self.classifier = generator, discriminator, classifier
        self.space: PixelSpace = classifier.space
        self.num_classes, self.noise_dim = int(num_classes), int(noise_dim)
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 2e-4, "weight_decay": 0.0,
                                              "betas": [0.5, 0.999]})
        self.discriminator_lr_scale = float(discriminator_lr_scale)
        self.d_steps, self.label_smoothing = int(d_steps), float(label_smoothing)
        self.num_samples, self.coverage_min_share, self.seed = int(num_samples), float(coverage_min_share), int(seed)
        # the generator as initialised (same seed → same weights on resume): the "untrained" anchor
        self.initial_generator_state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
        self._real: dict[str, list[torch.Tensor]] = {"val": [], "test": []}
        self.coverage_shares: torch.Tensor | None = None
        self.train_metrics = TrainEpochMetrics("d_loss", "d_real", "g_loss", prog_bar=("d_loss", "g_loss"))

    # --- sampling -------------------------------------------------------------------------
    def noise(self, n: int, seed: int) -> torch.Tensor:
        rng = torch.Generator().manual_seed(seed)
        return torch.randn(n, self.noise_dim, generator=rng).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, seed: int, generator: nn.Module | None = None) -> torch.Tensor:
        """``n`` images in [-1, 1] from fixed noise (eval-mode batch norm)."""
        net = generator or self.generator
        was_training = net.training
        net.eval()
        images = torch.cat([net(z) for z in self.noise(n, seed).split(1024)])
        net.train(was_training)
        return images

    def untrained_generator(self) -> nn.Module:
        untrained = copy.deepcopy(self.generator)
        untrained.load_state_dict(self.initial_generator_state)
        return untrained

    # --- training -------------------------------------------------------------------------
    def _bce(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _ = batch
        real = self.space.to_generator(x)
        opt_g, opt_d = self.optimizers()
        fake = self.generator(torch.randn(len(real), self.noise_dim, device=self.device))

        real_logits = self.discriminator.logits(real)
        fake_logits = self.discriminator.logits(fake.detach())
        d_loss = 0.5 * (self._bce(real_logits, 1.0 - self.label_smoothing) + self._bce(fake_logits, 0.0))
        d_value = check_finite(self, d_loss, "discriminator loss")
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.train_metrics.update_mean("d_loss", d_value, len(x))
        self.train_metrics.update_mean("d_real", torch.sigmoid(real_logits).mean(), len(x))

        if (batch_idx + 1) % self.d_steps == 0:
            g_loss = self._bce(self.discriminator.logits(fake), 1.0)  # non-saturating: -log D(G(z))
            g_value = check_finite(self, g_loss, "generator loss")
            opt_g.zero_grad()
            self.manual_backward(g_loss)
            opt_g.step()
            self.train_metrics.update_mean("g_loss", g_value, len(x))
        self.train_metrics.log_if_epoch_ends(self)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        d_cfg = {**self.optimizer_cfg, "lr": float(self.optimizer_cfg["lr"]) * self.discriminator_lr_scale}
        return [build_optimizer(self.generator.parameters(), self.optimizer_cfg),
                build_optimizer(self.discriminator.parameters(), d_cfg)]

    # --- evaluation -----------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._real["val"].append(self.space.to_generator(batch[0]))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._real["test"].append(self.space.to_generator(batch[0]))

    def _quality(self, split: str, seed: int) -> tuple[float, int, torch.Tensor]:
        real = torch.cat(self._real[split])
        self._real[split] = []
        fake = self.sample(self.num_samples, seed)
        covered, shares = class_coverage(self.classifier, fake, self.num_classes, self.coverage_min_share)
        return fid(self.classifier, real, fake), covered, shares

    def on_validation_epoch_end(self) -> None:
        score, covered, _ = self._quality("val", self.seed)
        self.log("val/fid", score, prog_bar=True)
        self.log("val/class_coverage", covered / self.num_classes)

    def on_test_epoch_end(self) -> None:
        real_test = torch.cat(self._real["test"])
        score, covered, shares = self._quality("test", self.seed + 1)
        self.coverage_shares = shares.cpu()
        train_x = self.trainer.datamodule.splits["train"].x.to(self.device)
        untrained = self.sample(self.num_samples, self.seed + 1, self.untrained_generator())
        self.log_dict({
            "test/fid": score,
            "test/class_coverage": covered / self.num_classes,
            "test/classes_covered": float(covered),
            # anchors: real train vs real test (the floor), an untrained generator (the ceiling)
            "test/fid_real_floor": fid(self.classifier, real_test, self.space.to_generator(train_x)),
            "test/fid_untrained": fid(self.classifier, real_test, untrained),
        })

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """samples.png (a grid from fixed noise) and class_shares.json of the last test."""
        from archbench.tasks.callbacks import save_grid

        grid = save_grid(self.space.to_unit(self.sample(100, self.seed + 2)), Path(out_dir) / "samples.png")
        shares = Path(out_dir) / "class_shares.json"
        values = [] if self.coverage_shares is None else [round(float(v), 4) for v in self.coverage_shares]
        shares.write_text(json.dumps(dict(zip(class_names, values, strict=False)), indent=2) + "\n")
        return [grid, shares]


class Adversarial(ImageGeneration):
    """A generator against a discriminator on images; scored by FID and class coverage."""

    name = "adversarial"
    monitor = ("val/fid", "min")

    def build(self, cfg, meta, datamodule) -> Built:
        from hydra.utils import instantiate

        from archbench.config import to_dict

        shape, model = list(datamodule.input_shape), cfg.model
        noise_dim = int(model.noise_dim)
        generator = instantiate(model.generator, input_shape=shape, noise_dim=noise_dim, _convert_="all")
        discriminator = instantiate(model.discriminator, input_shape=shape, _convert_="all")
        scorer = self.scorer(cfg, meta, datamodule)  # after the nets: building it draws random numbers
        module = AdversarialTask(
            generator, discriminator, scorer, meta.num_classes,
            noise_dim=noise_dim, optimizer=to_dict(cfg.optimizer),
            discriminator_lr_scale=float(model.discriminator_lr_scale), d_steps=int(model.d_steps),
            label_smoothing=float(model.label_smoothing), num_samples=int(model.quality.num_samples),
            coverage_min_share=float(model.quality.coverage_min_share), seed=int(cfg.seed))
        return Built(module, [generator, discriminator])

    def sampler(self, module) -> nn.Module:
        return ImageSampler(module.generator)

    def report_section(self, runs: list[RunResult], reports_dir: Path) -> list[str]:
        """One generative table: GANs and (``report_with``) autoencoders and VAEs on the same data."""
        from archbench.report.replicates import plus_minus, seed_interval, seeds_cell

        runs = sorted(runs, key=lambda r: (r.run["data"], r.get("test/fid")))
        lines = [
            "## Generative models", "",
            "FID between generated samples and the real test split, on the penultimate-layer features of",
            "a cnn archbench trained on the same data (lower is better), beside its two anchors: real",
            "training images (the floor) and the same generator untrained (the ceiling). Coverage: classes",
            "that the classifier finds among the generated samples (a mode-collapse signal). Samples: a",
            "GAN's generator from noise; a VAE's decoder from the prior N(0, I); an autoencoder's decoder",
            "from a Gaussian fitted to its training codes. Likelihood (nats per test image): a VAE's",
            "−ELBO (an upper bound on −log p(x)) and its importance-sampled estimate; an autoencoder's",
            "reconstruction loss. With a Gaussian decoder these are densities over pixel values in",
            "[0, 1], which can be negative and compare only with the same likelihood. Test FID: mean ±",
            "std over seeds, with a 95 % bootstrap interval over the seeds alone (three seeds resolve",
            "little).", "",
            *_closest(runs), "",
            "| dataset | model | seeds | parameters | test FID | 95 % CI | floor (real) | untrained | untrained ÷ trained "
            "| classes covered | −ELBO | IW NLL | epochs | train s |",
            "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        grids = []
        for r in runs:
            elbo = f"{-r.get('test/elbo'):.1f}" if "test/elbo" in r.metrics else (
                f"recon {r.get('test/recon'):.1f}" if "test/recon" in r.metrics else "–")
            nll = f"{r.get('test/nll_iw'):.1f}" if "test/nll_iw" in r.metrics else "–"
            lines.append(
                f"| {r.run['data']} | {r.run['model']} | {seeds_cell(r)} | {int(r.get('parameters', 0)):,} | "
                f"{plus_minus(r, 'test/fid', digits=2)} | {seed_interval(r, 'test/fid')} | {r.get('test/fid_real_floor'):.2f} | "
                f"{r.get('test/fid_untrained'):.1f} | {r.get('test/fid_untrained') / r.get('test/fid'):.0f}× | "
                f"{int(r.get('test/classes_covered', 0))}/{r.run.get('num_classes', 0)} | {elbo} | {nll} | "
                f"{int(r.get('epochs', 0))} | {r.get('train_seconds'):.1f} |")
            grids += _copied_grids(r, reports_dir)
        return lines + grids + [""]


def _closest(runs: list[RunResult]) -> list[str]:
    """Per dataset, the model whose samples are closest to the real test images, and how far above
    its FID every other model's lies."""
    lines = []
    for data in dict.fromkeys(r.run["data"] for r in runs):
        ranked = [r for r in runs if r.run["data"] == data]  # sorted by FID already
        best = ranked[0]
        others = ", ".join(f"{r.run['model']} {r.get('test/fid') / best.get('test/fid'):.1f}× its FID "
                           f"({r.get('test/fid'):.1f})" for r in ranked[1:])
        lines.append(f"- **{data}**: {best.run['model']}'s samples are closest (test FID "
                     f"{best.get('test/fid'):.1f})" + (f"; {others}." if others else "."))
    return lines


def _copied_grids(r: RunResult, reports_dir: Path) -> list[str]:
    """The run's samples (and reconstructions) grids, copied to reports/samples/, as markdown."""
    import shutil

    lines = []
    for name, what in (("samples", "samples from fixed noise"), ("reconstructions",
                                                                  "test images (odd rows) and their reconstructions")):
        source = r.folder / f"{name}.png"
        if not source.is_file():
            continue
        target = f"{r.key}.png" if name == "samples" else f"{r.key}.{name}.png"
        (reports_dir / "samples").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, reports_dir / "samples" / target)
        lines += ["", f"**{r.run['model']} on {r.run['data']}**, {what}:", "",
                  f"![{r.run['model']} {name}](samples/{target})"]
    return lines


TASK = Adversarial()
