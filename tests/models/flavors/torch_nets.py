"""Networks for the PyTorch flavor's tests, in an importable module as the flavor requires: a
stored model names its class by import path (``tests.models.flavors.torch_nets:TinyNet``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TinyNet(nn.Module):
    """A small MLP with a batch-norm layer (so its state holds buffers as well as weights);
    its sizes are constructor arguments, given to the flavor as init_kwargs."""

    def __init__(self, in_features: int = 4, hidden: int = 8, out_features: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                                    nn.ReLU(), nn.Linear(hidden, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConfiguredNet(TinyNet):
    """A TinyNet that reports its own constructor arguments, so none need passing."""

    def __init__(self, in_features: int = 4, hidden: int = 8, out_features: int = 1) -> None:
        super().__init__(in_features, hidden, out_features)
        self.config = {"in_features": in_features, "hidden": hidden,
                       "out_features": out_features}

    def get_config(self) -> dict[str, Any]:
        return dict(self.config)


class TiedNet(nn.Module):
    """A bag-of-tokens model whose output layer shares the embedding's weight, as language
    models tie them: safetensors refuses shared storage, so the flavor must handle it. It
    takes integer token ids."""

    def __init__(self, vocabulary: int = 20, dimension: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, dimension)
        self.out = nn.Linear(dimension, vocabulary, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(tokens).mean(dim=1))
