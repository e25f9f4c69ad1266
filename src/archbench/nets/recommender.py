"""Recommenders over (user, item) pairs: matrix factorisation and neural collaborative filtering.

Every net maps ``(N, 2)`` integer pairs (user id, item id; contiguous ids from the prepared data) to
``N`` scores: a rating residual for rating prediction, a logit for implicit-feedback ranking.
- ``MatrixFactorization``: the tutorials' dot product of user and item embeddings plus biases
  (Koren et al. 2009: r̂ = μ + b_u + b_i + p_u·q_i; the task adds μ).
- ``GMF``, ``NCFMLP``, ``NeuMF``: He et al., "Neural Collaborative Filtering" (WWW 2017): a learned
  weighting of the element-wise product, an MLP tower over concatenated embeddings, and both fused
  (separate embeddings per branch, their last layers concatenated into one output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from archbench.errors import ConfigError


def _embedding(count: int, size: int, std: float) -> nn.Embedding:
    embedding = nn.Embedding(int(count), int(size))
    nn.init.normal_(embedding.weight, std=std)
    return embedding


def _check(num_users: int, num_items: int, **sizes: int) -> None:
    if num_users < 1 or num_items < 1:
        raise ConfigError(f"a recommender needs users and items, got {num_users} users and {num_items} items")
    for name, size in sizes.items():
        if int(size) < 1:
            raise ConfigError(f"model.rec_net.{name} must be ≥ 1, got {size}")


class MatrixFactorization(nn.Module):
    """p_u·q_i + b_u + b_i."""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 32, init_std: float = 0.01,
                 biases: bool = True) -> None:
        super().__init__()
        _check(num_users, num_items, embedding_dim=embedding_dim)
        self.users, self.items = _embedding(num_users, embedding_dim, init_std), _embedding(num_items, embedding_dim, init_std)
        self.user_bias = _embedding(num_users, 1, 0.0) if biases else None
        self.item_bias = _embedding(num_items, 1, 0.0) if biases else None

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        users, items = pairs[:, 0], pairs[:, 1]
        score = (self.users(users) * self.items(items)).sum(-1)
        if self.user_bias is not None:
            score = score + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)
        return score


class GMF(nn.Module):
    """Generalised matrix factorisation: h·(p_u ⊙ q_i) + b (h learned: MF with weighted factors)."""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 8, init_std: float = 0.01) -> None:
        super().__init__()
        _check(num_users, num_items, embedding_dim=embedding_dim)
        self.users, self.items = _embedding(num_users, embedding_dim, init_std), _embedding(num_items, embedding_dim, init_std)
        self.out = nn.Linear(int(embedding_dim), 1)
        self.features_size = int(embedding_dim)

    def features(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.users(pairs[:, 0]) * self.items(pairs[:, 1])

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(pairs)).squeeze(-1)


class NCFMLP(nn.Module):
    """The NCF MLP: [p_u; q_i] → tower of ReLU layers (the paper's halving widths) → 1."""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 32,
                 tower: Sequence[int] = (64, 32, 16), dropout: float = 0.0, init_std: float = 0.01) -> None:
        super().__init__()
        _check(num_users, num_items, embedding_dim=embedding_dim)
        if not tower:
            raise ConfigError("model.rec_net.tower needs at least one layer width")
        self.users, self.items = _embedding(num_users, embedding_dim, init_std), _embedding(num_items, embedding_dim, init_std)
        layers: list[nn.Module] = []
        width = 2 * int(embedding_dim)
        for size in tower:
            layers += [nn.Linear(width, int(size)), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            width = int(size)
        self.tower, self.features_size = nn.Sequential(*layers), width
        self.out = nn.Linear(width, 1)

    def features(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.tower(torch.cat([self.users(pairs[:, 0]), self.items(pairs[:, 1])], dim=-1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(pairs)).squeeze(-1)


class NeuMF(nn.Module):
    """GMF and the NCF MLP side by side (own embeddings), last layers concatenated → 1."""

    def __init__(self, num_users: int, num_items: int, gmf_dim: int = 8, mlp_dim: int = 32,
                 tower: Sequence[int] = (64, 32, 16), dropout: float = 0.0, init_std: float = 0.01) -> None:
        super().__init__()
        self.gmf = GMF(num_users, num_items, gmf_dim, init_std)
        self.mlp = NCFMLP(num_users, num_items, mlp_dim, tower, dropout, init_std)
        del self.gmf.out, self.mlp.out  # fused into one output layer
        self.out = nn.Linear(self.gmf.features_size + self.mlp.features_size, 1)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.gmf.features(pairs), self.mlp.features(pairs)], dim=-1)).squeeze(-1)
