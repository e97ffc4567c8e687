"""DINO projection head: MLP -> bottleneck -> L2 normalisation -> weight-normalised prototypes."""

from __future__ import annotations

from xterrafm._imports import import_gate

with import_gate():
    import torch
    import torch.nn.functional as F
    from torch import nn

__all__ = ["DINOHead"]


class DINOHead(nn.Module):
    """Projection head of DINO.

    Parameters
    ----------
    in_dim : int
        Width D of the backbone's CLS embedding.
    out_dim : int
        Number of prototypes K (logits per sample).
    hidden_dim : int
        Width of the hidden MLP layers.
    bottleneck_dim : int
        Width of the L2-normalised bottleneck fed to the prototypes.
    n_layers : int
        Number of linear layers of the MLP (>= 1).
    norm_last_layer : bool
        Fix the norm of every prototype to 1 (the weight-norm gain is not trained).

    Notes
    -----
    ``forward(x)`` maps ``(B, in_dim)`` to ``(B, out_dim)`` logits. The prototypes are
    ``last_layer`` (a weight-normalised linear map without bias); trainers freeze it for the
    first steps by zeroing its gradient (see :func:`cancel_last_layer_gradients`).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if min(in_dim, out_dim, hidden_dim, bottleneck_dim) < 1:
            raise ValueError("head dimensions must be positive")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        for i in range(n_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < n_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad_(False)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(B, in_dim)`` embeddings to ``(B, out_dim)`` prototype logits."""
        z = self.mlp(x)
        z = F.normalize(z, dim=-1, p=2, eps=1e-6)
        return self.last_layer(z)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """The prototype parameters (frozen during the first epoch of training)."""
        return list(self.last_layer.parameters())
