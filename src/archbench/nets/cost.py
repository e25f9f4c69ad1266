"""What a trained net costs to run: FLOPs per example (PyTorch's FlopCounterMode on one forward
pass) and CPU inference latency per example at batch 1 and batch 256 (median of repeats)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def flops_per_example(net: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass over ``example`` (a batch), divided by its batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(example)
    return counter.get_total_flops() / len(example)


def latency_ms(net: nn.Module, example: torch.Tensor, batch: int, repeats: int, warmup: int = 2) -> float:
    """Median milliseconds per example of a forward pass over ``batch`` copies of the first example."""
    inputs = example[:1].expand(batch, *example.shape[1:]).contiguous()
    timings = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            started = time.perf_counter()
            net(inputs)
            if index >= warmup:
                timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings) / batch


def inference_cost(net: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """``cost/*`` metrics of ``net`` in eval mode on the current thread count."""
    was_training = net.training
    net.eval()
    try:
        return {"cost/flops_per_example": flops_per_example(net, example),
                "cost/latency_b1_ms": latency_ms(net, example, 1, repeats=20),
                "cost/latency_b256_ms": latency_ms(net, example, 256, repeats=3)}
    finally:
        net.train(was_training)
