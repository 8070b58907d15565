"""A network for the export tests, in an importable module as the PyTorch flavor requires: a
stored model names its class by import path (``tests.models.export_nets:ExportMLP``)."""

from __future__ import annotations

import torch
from torch import nn


class ExportMLP(nn.Module):
    """A small regression MLP: Linear layers (exported as Gemm, quantized as MatMul), a
    batch-norm layer (buffers besides weights) and ReLUs."""

    def __init__(self, in_features: int = 6, hidden: int = 32, out_features: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden),
                                    nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
