"""Torch's CPU threads for a run, and a first vector-math call that keeps runs repeatable."""

from __future__ import annotations


def use_threads(threads: int | None) -> None:
    """Sets torch's intra-op threads (``None``: torch's default), then makes the process's first
    MKL vector-math call (``tanh``) on a throwaway tensor.

    Why the throwaway call (measured here, torch 2.13 CPU build, 2 threads): the first ``tanh``,
    ``exp`` or ``erf`` of a process sometimes returns other last bits than every later call on the
    same input (4 of 24 processes; with 1 thread 0 of 12) — enough for a same-seed GAN run to end
    elsewhere (2 of 9). After one such call in the process, 36 of 36 first real calls matched.
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    settle_vector_math()


def settle_vector_math() -> None:
    """The throwaway first ``tanh`` of ``use_threads``, alone: ``TaskModule.setup`` calls it in
    every process a run trains in (DDP spawn's ranks start fresh). Further calls change nothing."""
    import torch

    torch.tanh(torch.zeros(16))
