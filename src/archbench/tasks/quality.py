"""Sample quality of a generator, judged by a classifier archbench trained on the same data.

FID (Fréchet distance between Gaussian fits of penultimate-layer features; torchmetrics computes
it) and class coverage (how many classes the classifier finds among generated samples).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archbench.errors import ConfigError, IncompatibleError
from archbench.tasks.base import Task, finished_run, instantiate_net


def penultimate_layers(net: nn.Module) -> nn.Sequential:
    """Everything of a classifier net but its last (class-score) layer."""
    if hasattr(net, "features") and isinstance(getattr(net, "classifier", None), nn.Sequential):
        return nn.Sequential(net.features, *list(net.classifier)[:-1])
    if isinstance(getattr(net, "layers", None), nn.Sequential):
        return nn.Sequential(*list(net.layers)[:-1])
    raise IncompatibleError(f"{type(net).__name__} has no penultimate layer to take FID features "
                            f"from; use a cnn, lenet5 or mlp classifier")


class PixelSpace:
    """Converts between a prepared dataset's normalised values and the generator's [-1, 1]
    (one mean and std, or one per channel)."""

    def __init__(self, mean: float | list[float], std: float | list[float]) -> None:
        self.mean, self.std = self._scale(mean), self._scale(std)

    @staticmethod
    def _scale(value: float | list[float]) -> float | torch.Tensor:
        return float(value) if not isinstance(value, list) else torch.tensor(value).view(-1, 1, 1)

    def _stats(self, like: torch.Tensor) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        return tuple(v.to(like) if isinstance(v, torch.Tensor) else v for v in (self.mean, self.std))

    def to_generator(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x * std + mean) * 2 - 1

    def to_dataset(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(images)
        return ((images + 1) / 2 - mean) / std

    @staticmethod
    def to_unit(images: torch.Tensor) -> torch.Tensor:
        """Generator output in [-1, 1] → pixel values in [0, 1]."""
        return ((images + 1) / 2).clamp(0, 1)


class FrozenClassifier(nn.Module):
    """A trained classifier seen from generator space: penultimate features (for FID, with the
    ``num_features`` torchmetrics asks for) and class predictions. Always in eval mode."""

    def __init__(self, net: nn.Module, space: PixelSpace, input_shape: list[int]) -> None:
        super().__init__()
        self.net, self.space = net, space
        self.body = penultimate_layers(net)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()
        with torch.no_grad():
            self.num_features = int(self.body(torch.zeros(2, *input_shape)).flatten(1).shape[-1])

    def train(self, mode: bool = True) -> FrozenClassifier:  # never trains
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.space.to_dataset(images)).flatten(1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.space.to_dataset(images)).argmax(dim=-1)


def fid(extractor: FrozenClassifier, real: torch.Tensor, fake: torch.Tensor, chunk: int = 2048) -> float:
    """Fréchet distance between the two image sets' features (0 for identical distributions)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=True).to(real.device)
    for start in range(0, len(real), chunk):
        metric.update(real[start : start + chunk], real=True)
    for start in range(0, len(fake), chunk):
        metric.update(fake[start : start + chunk], real=False)
    return float(metric.compute())


def class_coverage(extractor: FrozenClassifier, fake: torch.Tensor, num_classes: int,
                   min_share_of_uniform: float = 0.2) -> tuple[int, torch.Tensor]:
    """Classes holding at least ``min_share_of_uniform / num_classes`` of the generated samples
    (a mode-collapsed generator covers few), and the per-class shares."""
    predicted = torch.cat([extractor.predict(fake[i : i + 2048]) for i in range(0, len(fake), 2048)])
    shares = torch.bincount(predicted, minlength=num_classes).float() / max(1, len(predicted))
    return int((shares >= min_share_of_uniform / num_classes).sum()), shares


def load_classifier_run(run_dir: str | Path, data_checksum: str | None,
                        setting: str = "model.quality.classifier") -> nn.Module:
    """The tested checkpoint of a finished archbench classification run directory, as a plain net,
    rebuilt from the run's ``config.yaml``; the run must have been trained on exactly the data of
    ``data_checksum`` (None: any)."""
    cfg, run, weights = finished_run(run_dir, data_checksum, setting)
    net = instantiate_net(cfg.model.net, str(cfg.model.name), input_shape=list(run["input_shape"]),
                          num_classes=int(run["num_classes"]))
    net.load_state_dict(weights)
    return net.eval()


def classifier_run_dir(spec: str, tracking_uri: str) -> Path:
    """``model.quality.classifier`` as a run directory: a path, ``runs:/<id>`` or ``models:/<name>@<alias>``."""
    from archbench.tracking.runs import run_folder

    if spec == "auto":
        raise ConfigError("model.quality.classifier=auto is resolved by archbench-train before "
                          "training (archbench.provision.scoring_classifier); pass a finished "
                          "classification run directory or runs:/<id> here")
    return run_folder(spec, tracking_uri, "model.quality.classifier")


class ImageGeneration(Task):
    """What the image generators' tasks share (GANs, autoencoders, VAEs): image data in default
    layout, the scoring classifier, the sample-grid callback, and a sampler logged as the model."""

    data_kinds = ("image",)

    def scorer(self, cfg, meta, datamodule) -> FrozenClassifier:
        """The frozen classifier (``model.quality.classifier``) that scores the samples."""
        if datamodule.layout != "default":
            raise IncompatibleError(f"model {cfg.model.name} needs data.layout=default")
        run_dir = classifier_run_dir(str(cfg.model.quality.classifier), str(cfg.logger.tracking_uri))
        space = PixelSpace(meta.normalization["mean"], meta.normalization["std"])
        return FrozenClassifier(load_classifier_run(run_dir, meta.checksum), space, list(datamodule.input_shape))

    def callbacks(self, cfg, out_dir: Path) -> list:
        from archbench.tasks.callbacks import SampleGrid

        return [SampleGrid(out_dir, int(cfg.model.sample_every_n_epochs))]

    def cost_inputs(self, module, datamodule):
        return None  # the cost axes compare classifiers and regressors

    def sampler(self, module) -> nn.Module:
        """noise ``(N, module.noise_dim)`` → images in [0, 1]."""
        raise NotImplementedError

    def export(self, module, datamodule, serialization_format: str | None) -> str:
        from archbench.tracking.mlflow_run import log_torch_model

        noise = torch.randn(2, module.noise_dim, generator=torch.Generator().manual_seed(0))
        return log_torch_model(self.sampler(module).cpu().eval(), noise, serialization_format)
