"""Neural style transfer (Gatys, Ecker & Bethge 2016), as in the PyTorch and Keras tutorials: an
image is optimised with L-BFGS so that its feature maps match the content image's (content loss)
and their Gram matrices match the style image's (style loss), on a chosen feature network."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archbench.errors import ConfigError, DataError
from archbench.gc_policy import settle
from archbench.threads import use_threads

FEATURES = ("random", "vgg19", "runs:/<run_id>/model", "models:/<name>@<alias>")


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of (1, C, H, W) maps, divided by C·H·W (the tutorial's normalisation)."""
    _, channels, height, width = features.shape
    flat = features.reshape(channels, height * width)
    return flat @ flat.T / (channels * height * width)


class LayerFeatures(nn.Module):
    """The outputs of the named layers of ``net`` for an image in [0, 1]: the image is normalised
    (``mean``/``std``), made grey for a one-channel net, and a Sequential stops after the deepest
    layer asked for."""

    def __init__(self, net: nn.Module, layers: list[str], mean=(0.5,), std=(0.25,), grey: bool = False) -> None:
        super().__init__()
        self.net, self.layers, self.grey = net.eval().requires_grad_(False), list(layers), grey
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        names = self.available()
        unknown = [name for name in self.layers if name not in names]
        if unknown:
            raise ConfigError(f"unknown feature layer {unknown[0]!r}; valid: {', '.join(names)}")

    def available(self) -> list[str]:
        if hasattr(self.net, "branches"):  # RandomFilters: one output per branch
            return list(self.net.branches)
        return [name for name, _ in self.net.named_modules() if name]

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = image.mean(dim=1, keepdim=True) if self.grey else image
        x = (x - self.mean) / self.std
        if hasattr(self.net, "branches"):
            return {k: v for k, v in self.net(x).items() if k in self.layers}
        if isinstance(self.net, nn.Sequential):
            out, wanted = {}, set(self.layers)
            for name, layer in self.net.named_children():
                x = layer(x)
                if name in wanted:
                    out[name] = x
                    if len(out) == len(wanted):
                        break
            return out
        return self._hooked(x)

    def _hooked(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward hooks on the named modules; the forward pass stops once all have fired, so a
        classifier's dense head (sized for its training images) never sees a larger image."""
        out: dict[str, torch.Tensor] = {}
        modules = dict(self.net.named_modules())

        def keep(name: str, output: torch.Tensor) -> None:
            out[name] = output
            if len(out) == len(self.layers):
                raise _Enough

        handles = [modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: keep(name, output)) for name in self.layers]
        try:
            self.net(x)
        except _Enough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return out


class _Enough(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the last feature hook: the rest of the forward pass is not needed."""


@dataclass
class Transfer:
    """Losses per L-BFGS function evaluation and the final image."""

    image: torch.Tensor
    content_loss: list[float] = field(default_factory=list)
    style_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    content_reference: float = 0.0  # the style image's own content loss: an image with no content kept


def transfer(features: LayerFeatures, content: torch.Tensor, style: torch.Tensor, *,
             content_layers: list[str], style_layers: list[str], steps: int, content_weight: float,
             style_weight: float, init: str = "content", seed: int = 0) -> Transfer:
    """Optimise an image (1, 3, H, W) in [0, 1] for ``steps`` L-BFGS function evaluations.

    L-BFGS searches its steps by the strong Wolfe conditions: with the tutorial's fixed step and
    the pixels clamped to [0, 1] after each one, the style loss fell only 2× in 60 evaluations here
    (it kept overshooting), against 1,500× with the line search (China → flower, random features).
    """
    if init not in ("content", "noise"):
        raise ConfigError(f"unknown init {init!r}; valid: content, noise")
    if not content_layers or not style_layers:
        raise ConfigError("style transfer needs at least one content layer and one style layer")
    with torch.no_grad():
        content_targets = {k: v.detach() for k, v in features(content).items() if k in content_layers}
        style_maps = features(style)
        style_targets = {k: gram(v) for k, v in style_maps.items() if k in style_layers}
        reference = float(sum(F.mse_loss(style_maps[k], t) for k, t in content_targets.items()))
    generator = torch.Generator().manual_seed(seed)
    start = content.clone().contiguous() if init == "content" else torch.rand(content.shape, generator=generator)
    image = start.requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=steps, max_eval=steps, history_size=50,
                                  line_search_fn="strong_wolfe")
    result = Transfer(image, content_reference=reference)
    settle()  # the optimisation loop collects its garbage as usual (archbench.gc_policy)
    began = time.perf_counter()

    def closure() -> torch.Tensor:
        with torch.no_grad():  # the tutorial's way to keep pixels in range
            image.clamp_(0, 1)
        optimizer.zero_grad()
        maps = features(image)
        content_loss = sum(F.mse_loss(maps[k], t) for k, t in content_targets.items())
        style_loss = sum(F.mse_loss(gram(maps[k]), t) for k, t in style_targets.items())
        result.content_loss.append(float(content_loss.detach()))
        result.style_loss.append(float(style_loss.detach()))
        loss = content_weight * content_loss + style_weight * style_loss
        loss.backward()
        return loss

    optimizer.step(closure)  # up to ``steps`` evaluations; stops early once the loss stalls
    with torch.no_grad():
        image.clamp_(0, 1)
    result.image, result.seconds = image.detach(), time.perf_counter() - began
    return result


def load_image(path: str, size: int) -> torch.Tensor:
    """An image file as (1, 3, H, W) in [0, 1], its longer side resized to ``size``.
    ``sample:NAME`` names one of scikit-learn's sample photographs (china.jpg, flower.jpg)."""
    import numpy as np
    from PIL import Image

    if path.startswith("sample:"):
        import sklearn.datasets

        path = str(Path(sklearn.datasets.__file__).parent / "images" / path.removeprefix("sample:"))
    if not Path(path).is_file():
        raise DataError(f"image not found: {path} (give a file path, or sample:china.jpg / sample:flower.jpg)")
    try:
        image = Image.open(path).convert("RGB")
    except OSError as err:
        raise DataError(f"{path} is not an image file: {err}") from None
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def feature_network(cfg: Any, tracking_uri: str) -> LayerFeatures:
    """The configured feature net with its content and style layers (``cfg.features``)."""
    from archbench.nets.features import IMAGENET_MEAN, IMAGENET_STD, RandomFilters

    name = str(cfg.features)
    if _family(name) not in cfg.layers:
        raise ConfigError(f"unknown features {name!r}; valid: {', '.join(FEATURES)}")
    layers = sorted(set(cfg.layers[_family(name)].content) | set(cfg.layers[_family(name)].style))
    if name == "random":
        net = RandomFilters(list(cfg.random.kernels), int(cfg.random.maps), int(cfg.seed))
        return LayerFeatures(net, layers, IMAGENET_MEAN, IMAGENET_STD)
    if name == "vgg19":
        return LayerFeatures(_vgg19(str(cfg.vgg19.pool)), layers, IMAGENET_MEAN, IMAGENET_STD)
    if name.startswith(("runs:/", "models:/")):
        net = _run_net(name, tracking_uri)
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ConfigError(f"{name} has no 2-D convolution: style transfer needs an image CNN")
        return LayerFeatures(net, layers, grey=first.in_channels == 1)
    raise ConfigError(f"unknown features {name!r}; valid: {', '.join(FEATURES)}")


def _family(name: str) -> str:
    return "run" if name.startswith(("runs:/", "models:/")) else name


def _vgg19(pool: str) -> nn.Module:
    from archbench.nets.features import VGG19_WEIGHTS, load_vgg19_weights, vgg19_features

    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_WEIGHTS
    if not path.is_file():
        raise DataError(f"VGG-19 weights not found at {path}: put torchvision's ImageNet {VGG19_WEIGHTS} "
                        f"there (torchvision.models.vgg19(weights='IMAGENET1K_V1') downloads it), or use "
                        f"features=random or features=runs:/<run_id>/model")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return load_vgg19_weights(vgg19_features(pool), state)


def _run_net(uri: str, tracking_uri: str) -> nn.Module:
    """The net of an archbench classification run (``runs:/<id>/…``, or a registered version's run
    for ``models:/<name>@<alias>``), rebuilt from its run directory's config and tested checkpoint —
    the logged model may be an exported graph with no layers left to name. Any data will do: the
    net only lends its filters."""
    from archbench.tasks.quality import load_classifier_run
    from archbench.tracking.runs import run_folder

    return load_classifier_run(run_folder(uri, tracking_uri, "features"), None, "features")


def save_image(image: torch.Tensor, path: Path) -> Path:
    from PIL import Image

    pixels = (image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    Image.fromarray(pixels).save(path)
    return path


def plot_losses(result: Transfer, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(result.style_loss, label="style loss")
    ax.semilogy([max(v, 1e-12) for v in result.content_loss], label="content loss")
    ax.set_xlabel("L-BFGS function evaluation")
    ax.set_ylabel("loss (unweighted)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary(result: Transfer) -> dict[str, float]:
    """Start and end of both losses, and how far each moved (end ÷ start)."""
    content, style = result.content_loss, result.style_loss
    return {"style_loss_start": style[0], "style_loss_end": style[-1],
            "style_loss_fall": style[0] / max(style[-1], 1e-30),
            "content_loss_start": content[0], "content_loss_end": content[-1],
            "content_loss_ratio": content[-1] / content[0] if content[0] > 0 else float("inf"),
            "content_loss_of_style_image": result.content_reference,
            "evaluations": float(len(style)), "seconds": result.seconds}


def _validate(cfg: Any) -> None:
    """Numbers that cannot work, refused in one line before any image is read."""
    from archbench.config import int_at_least, number_at_least

    for key, minimum in (("steps", 1), ("size", 8), ("seed", 0), ("threads", 1)):
        int_at_least(cfg, key, minimum)
    for key in ("content_weight", "style_weight"):
        number_at_least(cfg, key, 0)


def stylize(cfg: Any) -> dict[str, Any]:
    """Run one transfer as configured (conf/stylize.yaml); write the PNG and the loss curve and log
    both, the losses and the config as an MLflow run. Returns the summary and the paths."""
    import mlflow

    from archbench.stores import check_tracking_store

    _validate(cfg)
    check_tracking_store(str(cfg.tracking_uri), "tracking_uri")
    use_threads(cfg.threads)
    torch.manual_seed(int(cfg.seed))
    family = _family(str(cfg.features))
    features = feature_network(cfg, str(cfg.tracking_uri))
    content = load_image(str(cfg.content), int(cfg.size))
    style = load_image(str(cfg.style), int(cfg.size))
    style = F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False)
    result = transfer(features, content, style, content_layers=list(cfg.layers[family].content),
                      style_layers=list(cfg.layers[family].style), steps=int(cfg.steps),
                      content_weight=float(cfg.content_weight), style_weight=float(cfg.style_weight),
                      init=str(cfg.init), seed=int(cfg.seed))
    out = Path(str(cfg.output))
    out.parent.mkdir(parents=True, exist_ok=True)
    image_path = save_image(result.image, out)
    curve_path = plot_losses(result, out.with_name(out.stem + "_losses.png"))
    numbers = summary(result)
    mlflow.set_tracking_uri(str(cfg.tracking_uri))
    mlflow.set_experiment(str(cfg.experiment_name))
    with mlflow.start_run(run_name=f"stylize-{cfg.features}") as run:
        from omegaconf import OmegaConf

        from archbench.config import dotted_leaves

        # paths.output_dir needs a Hydra run, which a compose has not: every other key, resolved
        settings = {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value)
                    else value for key, value in cfg.items() if key != "paths"}
        mlflow.log_params({k: str(v)[:500] for k, v in dotted_leaves(settings).items()})
        for step, (c, s) in enumerate(zip(result.content_loss, result.style_loss, strict=True)):
            mlflow.log_metrics({"content_loss": c, "style_loss": s}, step=step, synchronous=False)
        mlflow.log_metrics({k: v for k, v in numbers.items() if v != float("inf")})
        mlflow.log_artifact(str(image_path))
        mlflow.log_artifact(str(curve_path))
        run_id = run.info.run_id
    return {**numbers, "image": str(image_path), "curve": str(curve_path), "run_id": run_id}
