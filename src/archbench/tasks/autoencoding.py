"""Autoencoders and VAEs: reconstruction, the evidence lower bound, and samples scored like a GAN's.

Pixels: the prepared images are standardised; the task maps them back to intensities in [0, 1]
(``PixelSpace``), which the Bernoulli decoder treats as targets of a per-pixel cross-entropy, summed
per image in nats (as the PyTorch VAE example does on MNIST's grey values; ``model.binarize=dynamic``
instead draws binary pixels with those probabilities every batch, the IWAE paper's protocol, and
one fixed seeded draw for evaluation). The Gaussian decoder has a fixed ``model.gaussian_std``.

A VAE (``model.variational=true``) minimises ``recon + β·KL(q(z|x) ‖ N(0, I))`` and reports the ELBO
(β = 1, nats per image; ``test/elbo``) and an importance-sampled log-likelihood (``test/nll_iw``,
``model.iw_samples`` draws from q per image; Burda et al. 2016). A plain autoencoder minimises the
reconstruction loss (summed BCE, or summed squared error for ``likelihood=gaussian``); to sample from
it, a full-covariance Gaussian is fitted to its training codes. Either way the decoder is scored
with the GANs' FID and class coverage (``tasks/quality.py``) and logged as a sampler: noise
``(N, latent_dim)`` → images in [0, 1].
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError
from archbench.tasks.base import Built
from archbench.tasks.epoch_metrics import TrainEpochMetrics, check_finite
from archbench.tasks.module import TaskModule
from archbench.tasks.optim import lightning_optimizers
from archbench.tasks.quality import FrozenClassifier, ImageGeneration, class_coverage, fid

LIKELIHOODS = ("bernoulli", "gaussian")
BINARIZE = ("none", "dynamic")
LOG_2PI = math.log(2 * math.pi)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) ‖ N(0, I)) per sample, summed over latent dimensions (≥ 0)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


def normal_log_prob(z: torch.Tensor, mean: torch.Tensor | float = 0.0,
                    log_var: torch.Tensor | float = 0.0) -> torch.Tensor:
    """log N(z; mean, diag exp(log_var)), summed over the last dimension."""
    log_var = torch.as_tensor(log_var, dtype=z.dtype, device=z.device)
    return -0.5 * ((z - mean).pow(2) / log_var.exp() + log_var + LOG_2PI).sum(-1)


class LatentSampler(nn.Module):
    """What archbench logs for an autoencoder or VAE: noise ``(N, latent_dim)`` → images in [0, 1],
    through the latent prior (N(0, I) for a VAE; the Gaussian fitted to an autoencoder's codes)."""

    def __init__(self, decoder: nn.Module, prior_mean: torch.Tensor, prior_scale: torch.Tensor) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("prior_mean", prior_mean.detach().clone())
        self.register_buffer("prior_scale", prior_scale.detach().clone())  # lower-triangular

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.prior_mean + noise @ self.prior_scale.T))


class AutoencodingTask(TaskModule):
    """Training by reconstruction (and KL for a VAE); ELBO, IW log-likelihood, FID and coverage."""

    def __init__(self, net: nn.Module, classifier: FrozenClassifier, num_classes: int,
                 likelihood: str = "bernoulli", beta: float = 1.0, gaussian_std: float = 0.1,
                 binarize: str = "none", iw_samples: int = 64, num_samples: int = 2000,
                 coverage_min_share: float = 0.2, optimizer: dict[str, Any] | None = None,
                 scheduler: dict[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown model.likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}")
        if binarize not in BINARIZE:
            raise ConfigError(f"unknown model.binarize {binarize!r}; valid: {', '.join(BINARIZE)}")
        if binarize == "dynamic" and likelihood != "bernoulli":
            raise ConfigError("model.binarize=dynamic needs model.likelihood=bernoulli")
        if beta < 0 or gaussian_std <= 0 or iw_samples < 1:
            raise ConfigError(f"need model.beta ≥ 0, model.gaussian_std > 0, model.iw_samples ≥ 1; got "
                              f"{beta}, {gaussian_std}, {iw_samples}")
        self.save_hyperparameters(ignore=["net", "classifier"])  # plain values: weights_only loads
        self.net, self.classifier, self.space = net, classifier, classifier.space
        self.variational, self.latent_dim = bool(net.variational), int(net.latent_dim)
        self.noise_dim = self.latent_dim  # the logged sampler's input width
        self.num_classes, self.likelihood, self.beta = int(num_classes), likelihood, float(beta)
        self.gaussian_std, self.binarize, self.iw_samples = float(gaussian_std), binarize, int(iw_samples)
        self.num_samples, self.coverage_min_share, self.seed = int(num_samples), float(coverage_min_share), int(seed)
        self.optimizer_cfg = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
        self.scheduler_cfg = dict(scheduler or {"name": "none"})
        self.initial_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.register_buffer("prior_mean", torch.zeros(self.latent_dim))
        self.register_buffer("prior_scale", torch.eye(self.latent_dim))
        self.train_metrics = TrainEpochMetrics("loss", "recon", "kl")
        self._eval: dict[str, list[torch.Tensor]] = {}
        self.test_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- the likelihood -------------------------------------------------------------------
    def targets(self, x: torch.Tensor, fixed_seed: int | None = None) -> torch.Tensor:
        """Pixel intensities in [0, 1] (binary draws with ``binarize=dynamic``)."""
        unit = self.space.to_unit(self.space.to_generator(x))
        if self.binarize == "none":
            return unit
        if fixed_seed is None:
            return torch.bernoulli(unit)
        rng = torch.Generator(device=unit.device).manual_seed(fixed_seed)
        return (torch.rand(unit.shape, generator=rng, device=unit.device) < unit).to(unit.dtype)

    def reconstruction_nll(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image (nats), summed over pixels; an autoencoder's gaussian: squared error."""
        dims = tuple(range(target.dim() - 3, target.dim()))
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dims)
        error = (torch.sigmoid(logits) - target).pow(2)
        if not self.variational:
            return error.sum(dims)
        return (0.5 * error / self.gaussian_std**2 + math.log(self.gaussian_std) + 0.5 * LOG_2PI).sum(dims)

    def losses(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image reconstruction NLL, KL and the β-weighted loss (one draw of z for a VAE)."""
        mean, log_var = self.net.encode(x)
        if log_var is None:
            recon = self.reconstruction_nll(self.net.decode(mean), target)
            return {"recon": recon, "kl": torch.zeros_like(recon), "loss": recon}
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()  # reparameterisation
        recon, kl = self.reconstruction_nll(self.net.decode(z), target), kl_to_standard_normal(mean, log_var)
        return {"recon": recon, "kl": kl, "loss": recon + self.beta * kl}

    @torch.no_grad()
    def log_likelihood_iw(self, x: torch.Tensor, target: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """Importance-sampled log p(x) per image: log mean_k p(x|z_k) p(z_k) / q(z_k|x)."""
        k = k or self.iw_samples
        mean, log_var = self.net.encode(x)
        weights = []
        for draws in torch.arange(k).split(max(1, 4096 // max(1, len(x)))):
            z = mean + torch.randn(len(draws), *mean.shape, device=mean.device) * (0.5 * log_var).exp()
            logits = self.net.decode(z.flatten(0, 1)).unflatten(0, (len(draws), len(x)))
            weights.append(-self.reconstruction_nll(logits, target.expand(len(draws), *target.shape))
                           + normal_log_prob(z) - normal_log_prob(z, mean, log_var))
        return torch.logsumexp(torch.cat(weights), dim=0) - math.log(k)

    # --- training -------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[0]
        parts = {name: value.mean() for name, value in self.losses(x, self.targets(x)).items()}
        check_finite(self, parts["loss"])
        for name, value in parts.items():
            self.train_metrics.update_mean(name, value, len(x))
        self.train_metrics.log_if_epoch_ends(self)
        return parts["loss"]

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.net.parameters(), self.optimizer_cfg, self.scheduler_cfg, self.trainer)

    # --- evaluation -----------------------------------------------------------------------
    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, split: str) -> None:
        x = batch[0]
        target = self.targets(x, fixed_seed=self.seed + batch_idx)
        parts = self.losses(x, target)
        values = {"loss": parts["loss"], "recon": parts["recon"]}
        if self.variational:
            values |= {"kl": parts["kl"], "elbo": -(parts["recon"] + parts["kl"])}
            if split == "test":
                values["nll_iw"] = -self.log_likelihood_iw(x, target)
        for name, value in values.items():
            self.log(f"{split}/{name}", value.mean(), prog_bar=name == "loss", batch_size=len(x))
        self._eval.setdefault(split, []).append(self.space.to_generator(x))
        if split == "test" and batch_idx == 0:
            self.test_batch = (x[:50].detach(), batch[1][:50].detach())

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        real = torch.cat(self._eval.pop("val", [])) if "val" in self._eval else None
        if real is None or self.trainer.sanity_checking:
            return
        self.fit_prior()
        fake = self.sample(self.num_samples, self.seed)
        covered, _ = class_coverage(self.classifier, fake, self.num_classes, self.coverage_min_share)
        self.log_dict({"val/fid": fid(self.classifier, real, fake), "val/class_coverage": covered / self.num_classes})

    def on_test_epoch_end(self) -> None:
        real = torch.cat(self._eval.pop("test"))
        self.fit_prior()
        fake = self.sample(self.num_samples, self.seed + 1)
        covered, self.coverage_shares = class_coverage(self.classifier, fake, self.num_classes,
                                                       self.coverage_min_share)
        untrained = copy.deepcopy(self.net)
        untrained.load_state_dict(self.initial_state)
        train_x = self.trainer.datamodule.splits["train"].x.to(self.device)
        self.log_dict({
            "test/fid": fid(self.classifier, real, fake),
            "test/class_coverage": covered / self.num_classes,
            "test/classes_covered": float(covered),
            "test/fid_real_floor": fid(self.classifier, real, self.space.to_generator(train_x)),
            "test/fid_untrained": fid(self.classifier, real, self.sample(self.num_samples, self.seed + 1, untrained)),
        })

    # --- sampling -------------------------------------------------------------------------
    @torch.no_grad()
    def prior(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampling prior's mean and lower-triangular scale: N(0, I) for a VAE; for an
        autoencoder, the Gaussian of its training codes (mean, Cholesky factor of the covariance)."""
        eye = torch.eye(self.latent_dim, device=self.device)
        if self.variational:
            return torch.zeros(self.latent_dim, device=self.device), eye
        was_training = net.training
        net.eval()
        train_x = self.trainer.datamodule.splits["train"].x.to(self.device)
        codes = torch.cat([net.encode(chunk)[0] for chunk in train_x.split(2048)]).double()
        net.train(was_training)
        covariance = torch.cov(codes.T).reshape(self.latent_dim, self.latent_dim)
        jitter = 1e-6 * covariance.diagonal().mean().clamp_min(1e-12) * eye.double()
        return codes.mean(0).float(), torch.linalg.cholesky(covariance + jitter).float()

    def fit_prior(self) -> None:
        """Refit the logged sampler's prior to the current net (a no-op for a VAE)."""
        mean, scale = self.prior(self.net)
        self.prior_mean.copy_(mean)
        self.prior_scale.copy_(scale)

    def sampler(self) -> LatentSampler:
        return LatentSampler(self.net.decoder, self.prior_mean, self.prior_scale)

    @torch.no_grad()
    def sample(self, n: int, seed: int, net: nn.Module | None = None) -> torch.Tensor:
        """``n`` images in [-1, 1] (the scorer's space) from fixed noise through the prior; ``net``:
        another net of the same shape (the untrained anchor), with its own prior."""
        net = net or self.net
        sampler = self.sampler() if net is self.net else LatentSampler(net.decoder, *self.prior(net))
        was_training = net.training
        net.eval()
        noise = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        images = torch.cat([sampler(z) for z in noise.split(1024)]) * 2 - 1
        net.train(was_training)
        return images

    def test_outputs(self, out_dir: Path, class_names: list[str]) -> list[Path]:
        """samples.png, reconstructions.png (originals above reconstructions) and latent.png."""
        from archbench.tasks.callbacks import save_grid

        out_dir = Path(out_dir)
        paths = [save_grid(self.space.to_unit(self.sample(100, self.seed + 2)), out_dir / "samples.png")]
        if self.test_batch is None:
            return paths
        x = self.test_batch[0].to(self.device)
        with torch.no_grad():
            self.net.eval()
            recon = torch.sigmoid(self.net(x))
        original = self.space.to_unit(self.space.to_generator(x))
        rows = [t for i in range(0, len(x), 10) for t in (original[i : i + 10], recon[i : i + 10])]
        paths.append(save_grid(torch.cat(rows), out_dir / "reconstructions.png"))
        paths.append(self.latent_scatter(out_dir / "latent.png", class_names))
        return paths

    def latent_scatter(self, path: Path, class_names: list[str]) -> Path:
        """Test codes (q's means) in 2-D, coloured by class: the codes themselves for latent_dim 2,
        else their first two principal components."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        test = self.trainer.datamodule.splits["test"]
        with torch.no_grad():
            codes = torch.cat([self.net.encode(c.to(self.device))[0] for c in test.x.split(2048)]).cpu()
        title = "latent codes"
        if codes.shape[1] > 2:
            centred = codes - codes.mean(0)
            codes, title = centred @ torch.linalg.svd(centred, full_matrices=False).Vh[:2].T, "latent codes, PCA"
        fig, ax = plt.subplots(figsize=(5, 5))
        scatter = ax.scatter(codes[:, 0], codes[:, 1], c=test.y.cpu().numpy(), cmap="tab10", s=4)
        ax.legend(*scatter.legend_elements(), title="class", fontsize=7, loc="best")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


class Autoencoding(ImageGeneration):
    """Autoencoders and VAEs on images: ELBO (VAE), reconstructions, and GAN-comparable FID."""

    name = "autoencoding"
    monitor = ("val/loss", "min")
    report_with = "adversarial"  # one generative table beside the GANs

    def build(self, cfg, meta, datamodule) -> Built:
        from archbench.config import to_dict
        from archbench.tasks.base import instantiate_net

        model = cfg.model
        net = instantiate_net(model.net, str(model.name), input_shape=list(datamodule.input_shape))
        scorer = self.scorer(cfg, meta, datamodule)  # after the net: building it draws random numbers
        module = AutoencodingTask(
            net, scorer, meta.num_classes, likelihood=str(model.likelihood), beta=float(model.beta),
            gaussian_std=float(model.gaussian_std), binarize=str(model.binarize),
            iw_samples=int(model.iw_samples), num_samples=int(model.quality.num_samples),
            coverage_min_share=float(model.quality.coverage_min_share), optimizer=to_dict(cfg.optimizer),
            scheduler=to_dict(cfg.scheduler), seed=int(cfg.seed))
        return Built(module, [net])

    def sampler(self, module) -> nn.Module:
        return module.sampler()


TASK = Autoencoding()
