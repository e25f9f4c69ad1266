"""Greedy and beam-search decoding for the encoder-decoder nets of ``archbench.nets.seq2seq``,
and greedy / prefix-beam CTC decoding for per-frame acoustic models (``nets.deepspeech``).

Seq2seq decoders return target ids ``(N, L)`` without ``<sos>``: a sentence ends at its first
``<eos>`` and is padded with ``<pad>`` after it. Written here because torch has no generic decoder
for custom ``nn.Module``s (Hugging Face's ``generate`` needs its own model classes), and its CTC
decoder lives in torchaudio, which does not pair with this torch build.
"""

from __future__ import annotations

import torch
from torch import nn

from archbench.nets.common import EOS_ID, PAD_ID, SOS_ID


@torch.no_grad()
def greedy_decode(net: nn.Module, src: torch.Tensor, max_len: int,
                  keep_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The arg-max token at every step; with ``keep_attention`` also the attention weights
    ``(N, L, S)`` of a net that records them (else None)."""
    state = net.encode(src)
    prev = torch.full((len(src),), SOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    tokens, attention = [], []
    for _ in range(max_len):
        logits, state = net.step(state, prev)
        prev = logits.argmax(dim=-1).masked_fill(done, PAD_ID)
        tokens.append(prev)
        if keep_attention and "attention" in state:
            attention.append(state["attention"])
        done = done | (prev == EOS_ID)
        if bool(done.all()):
            break
    weights = torch.stack(attention, dim=1) if attention else None
    return torch.stack(tokens, dim=1), weights


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016); alpha 0 ranks by total log-probability."""
    return ((5.0 + lengths) / 6.0) ** alpha


@torch.no_grad()
def beam_search(net: nn.Module, src: torch.Tensor, beam_size: int, max_len: int,
                alpha: float = 1.0) -> torch.Tensor:
    """The best of ``beam_size`` hypotheses per sentence by log-probability / length penalty.

    All sentences' beams advance together (``N·K`` decoder rows). A finished beam (after its
    ``<eos>``) only extends with ``<pad>`` at no cost, so it keeps its score and its length while
    the others grow; the penalty ranks the ``K`` final beams. ``beam_size=1`` is greedy search.
    """
    n, k = len(src), int(beam_size)
    if k < 1:
        raise ValueError(f"beam size must be ≥ 1, got {k}")
    state = {key: value.repeat_interleave(k, dim=0) for key, value in net.encode(src).items()}
    scores = torch.full((n, k), float("-inf"), device=src.device)
    scores[:, 0] = 0.0  # one live beam per sentence at the start
    prev = torch.full((n * k,), SOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(n * k, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(n * k, device=src.device)
    history = torch.empty(n * k, 0, dtype=torch.long, device=src.device)
    offsets = (torch.arange(n, device=src.device) * k).unsqueeze(1)
    for _ in range(max_len):
        logits, state = net.step(state, prev)
        logp = logits.float().log_softmax(dim=-1)
        vocab = logp.shape[-1]
        finished = torch.full_like(logp[0], float("-inf"))
        finished[PAD_ID] = 0.0
        logp = torch.where(done.unsqueeze(1), finished, logp)
        best, index = (scores.reshape(-1, 1) + logp).reshape(n, k * vocab).topk(k, dim=1)
        rows = (offsets + torch.div(index, vocab, rounding_mode="floor")).reshape(-1)
        prev = (index % vocab).reshape(-1)
        state = {key: value[rows] for key, value in state.items()}
        history = torch.cat([history[rows], prev.unsqueeze(1)], dim=1)
        done, lengths = done[rows], lengths[rows]
        lengths = lengths + (~done).float()
        done = done | (prev == EOS_ID)
        scores = best
        if bool(done.all()):
            break
    ranked = (scores.reshape(-1) / length_penalty(lengths, alpha)).reshape(n, k)
    chosen = offsets.squeeze(1) + ranked.argmax(dim=1)
    return history[chosen]


# --- CTC (Graves et al. 2006): per-frame log-probabilities over symbols + a blank -------------
def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int) -> list[list[int]]:
    """Best path: the arg-max symbol of every frame, repeats merged, blanks dropped.
    ``log_probs`` ``(N, T, classes)``, ``lengths`` ``(N,)`` frames that count."""
    best = log_probs.argmax(dim=-1).cpu()
    decoded = []
    for row, length in zip(best.tolist(), lengths.tolist(), strict=True):
        out, previous = [], blank
        for symbol in row[: int(length)]:
            if symbol != previous and symbol != blank:
                out.append(symbol)
            previous = symbol
        decoded.append(out)
    return decoded


def _log_add(*values: float) -> float:
    import math

    top = max(values)
    return top if top == -math.inf else top + math.log(sum(math.exp(v - top) for v in values))


def ctc_prefix_beam(log_probs: torch.Tensor, length: int, blank: int, beam_size: int = 8) -> list[int]:
    """Prefix beam search (Hannun et al. 2014) without a language model: the ``beam_size`` most
    probable label prefixes, each scored by the total probability of every frame path that
    collapses to it (blank-ending and symbol-ending paths kept apart). One utterance ``(T, classes)``."""
    import math

    none = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, none)}  # (p ends in blank, p ends in symbol)
    for row in log_probs[: int(length)].double().cpu().tolist():
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_s) in beams.items():
            same = grown.setdefault(prefix, [none, none])
            same[0] = _log_add(same[0], p_b + row[blank], p_s + row[blank])
            for symbol, p in enumerate(row):
                if symbol == blank:
                    continue
                longer = grown.setdefault(prefix + (symbol,), [none, none])
                if prefix and prefix[-1] == symbol:
                    longer[1] = _log_add(longer[1], p_b + p)  # a repeat needs a blank between
                    same[1] = _log_add(same[1], p_s + p)  # else it merges
                else:
                    longer[1] = _log_add(longer[1], p_b + p, p_s + p)
        ranked = sorted(grown.items(), key=lambda item: -_log_add(*item[1]))[:beam_size]
        beams = {prefix: (p_b, p_s) for prefix, (p_b, p_s) in ranked}
    return list(max(beams.items(), key=lambda item: _log_add(*item[1]))[0])
