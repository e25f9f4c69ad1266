"""What a trained net costs: FLOPs per example (PyTorch's FlopCounterMode on one forward pass), CPU
inference latency per example at batch 1 and batch 256 (median of repeats), and the peak tensor
memory of one training step (PyTorch's MemTracker: parameters, gradients, activations, optimizer
state)."""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def fused_recurrent_flops(input_shape, hx, params, has_biases, num_layers, dropout, train,
                          bidirectional, batch_first, *args, out_shape=None, **kwargs) -> int:
    """Matmul FLOPs of a fused recurrent op (PyTorch's counter has no formula for these, so an
    LSTM run by one kernel would count as free): 2·rows·cols per weight matrix
    (input-to-hidden and hidden-to-hidden, every layer and direction) per time step and example."""
    batch, steps = (input_shape[0], input_shape[1]) if batch_first else (input_shape[1], input_shape[0])
    weights = [shape for shape in params if len(shape) == 2]
    return sum(2 * rows * cols for rows, cols in weights) * steps * batch


def mkldnn_layer_flops(input_shape, weight_ih, weight_hh, bias_ih, bias_hh, hx, cx, reverse, batch_sizes,
                       mode, hidden_size, num_layers, has_biases, bidirectional, batch_first, *args,
                       out_shape=None, **kwargs) -> int:
    """The same for one layer of the oneDNN kernel that CPU LSTMs run as (``mkldnn_rnn_layer``)."""
    batch, steps = (input_shape[0], input_shape[1]) if batch_first else (input_shape[1], input_shape[0])
    return 2 * (weight_ih[0] * weight_ih[1] + weight_hh[0] * weight_hh[1]) * steps * batch


def flops_per_example(net: nn.Module, example: torch.Tensor) -> float:
    """FLOPs of one forward pass over ``example`` (a batch), divided by its batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    fused = {aten.lstm.input: fused_recurrent_flops, aten.gru.input: fused_recurrent_flops,
             aten.rnn_tanh.input: fused_recurrent_flops, aten.rnn_relu.input: fused_recurrent_flops,
             aten.mkldnn_rnn_layer: mkldnn_layer_flops}
    counter = FlopCounterMode(display=False, custom_mapping=fused)
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


def _memory_tracker():
    """torch's ``MemTracker``, whose walk over a module's inputs and outputs reads their tensors only.
    Its own walk (``tree_map``) rebuilds every container from None results, which a PackedSequence
    (the recurrent text classifiers' input to nn.LSTM) refuses, so those nets went unmeasured."""
    from torch.distributed._tools.mem_tracker import MemTracker
    from torch.utils._pytree import tree_leaves

    class LeafMemTracker(MemTracker):
        def _track_inputs_or_outputs(self, args):
            return super()._track_inputs_or_outputs([a for a in tree_leaves(args) if isinstance(a, torch.Tensor)])

    return LeafMemTracker()


def training_peak_bytes(net: nn.Module, example: torch.Tensor, batch_size: int,
                        make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer]) -> float | None:
    """Peak bytes of live tensors during a training step at ``batch_size`` (forward, backward of a
    scalar, optimizer step, optimizer state included), measured on a copy of ``net`` so the trained
    weights are untouched. The second of two steps counts: the first creates the optimizer state.
    None, with a warning, where the tracker fails: a cost figure never fails a finished training."""
    trainee = copy.deepcopy(net).train()
    optimizer = make_optimizer(list(trainee.parameters()))
    inputs = example[:1].expand(batch_size, *example.shape[1:]).contiguous()
    tracker = _memory_tracker()
    tracker.track_external(trainee, optimizer)
    try:
        with tracker:
            for _ in range(2):
                output = trainee(inputs)
                (output[0] if isinstance(output, tuple) else output).float().sum().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tracker.reset_mod_stats()
    except (AssertionError, RuntimeError, TypeError) as err:  # the tracker's hooks on an input they cannot walk
        import warnings

        warnings.warn(f"training peak memory not measured: MemTracker failed ({err})", stacklevel=2)
        return None
    peaks = tracker.get_tracker_snapshot("peak")
    return float(sum(device["Total"] for device in peaks.values()))
