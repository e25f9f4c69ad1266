"""Feature networks for neural style transfer (Gatys et al. 2016): VGG-19's convolutional part
with its layers named as in the paper (conv1_1 … relu5_4, pool1 … pool5), and a bank of random
multi-scale filters (Ustyuzhaninov et al. 2017: one layer of random convolutions of several sizes
already carries texture)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

VGG19_BLOCKS = (2, 2, 4, 4, 4)  # convolutions per block (configuration E)
VGG19_MAPS = (64, 128, 256, 512, 512)
VGG19_WEIGHTS = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet weights, in torch hub's checkpoints/
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_features(pool: str = "max") -> nn.Sequential:
    """VGG-19's 16 convolutions with ReLUs and five pools, in torchvision's ``vgg19().features``
    order (so its state dict loads position by position), each layer named as in Gatys et al."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_maps = 3
    for block, (convs, maps) in enumerate(zip(VGG19_BLOCKS, VGG19_MAPS, strict=True), start=1):
        for index in range(1, convs + 1):
            layers[f"conv{block}_{index}"] = nn.Conv2d(in_maps, maps, 3, padding=1)
            layers[f"relu{block}_{index}"] = nn.ReLU()
            in_maps = maps
        layers[f"pool{block}"] = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    return nn.Sequential(layers)


def load_vgg19_weights(net: nn.Sequential, state: dict[str, torch.Tensor]) -> nn.Sequential:
    """torchvision's ``features.N.weight``/``bias`` tensors, in order, into ``vgg19_features``."""
    ours = [k for k in net.state_dict()]
    theirs = sorted((k for k in state if k.startswith("features.")),
                    key=lambda k: (int(k.split(".")[1]), k.endswith("weight") is False))
    if len(ours) != len(theirs):
        raise ValueError(f"expected {len(ours)} VGG-19 feature tensors, found {len(theirs)}")
    net.load_state_dict({mine: state[key] for mine, key in zip(ours, theirs, strict=True)})
    return net


class RandomFilters(nn.Module):
    """Parallel single-layer random convolutions, ``maps`` filters for each size in ``kernels``,
    each followed by ReLU; layer ``k<size>`` is one branch's output. Seeded, never trained."""

    def __init__(self, kernels: Sequence[int] = (3, 5, 7, 11, 15, 23), maps: int = 64, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.branches = nn.ModuleDict()
        for size in kernels:
            conv = nn.Conv2d(3, maps, int(size), padding=int(size) // 2)
            bound = (3 / (3 * size * size)) ** 0.5  # unit-variance responses to unit-variance input
            with torch.no_grad():
                conv.weight.uniform_(-bound, bound, generator=generator)
                conv.bias.zero_()
            self.branches[f"k{size}"] = nn.Sequential(conv, nn.ReLU())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: branch(x) for name, branch in self.branches.items()}
