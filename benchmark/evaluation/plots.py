"""Figures for final results (matplotlib, headless): cosine heatmaps and Recall@k curves."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def png_bytes(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (no timestamp or software tag: the same figure gives the same bytes); closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def cosine_heatmaps(untrained: torch.Tensor, trained: torch.Tensor, title: str = "") -> bytes:
    """Side by side: text x molecule cosine similarities of the first K test pairs, before and after."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, matrix, name in zip(axes, (untrained, trained), ("untrained heads", "trained bridge"), strict=True):
        image = ax.imshow(matrix.cpu().numpy(), cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(name)
        ax.set_xlabel("molecule")
        ax.set_ylabel("text")
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return png_bytes(fig)


def pair_similarities(bridge, data, rows: np.ndarray, k: int = 40) -> torch.Tensor:
    """Cosine similarity of the texts and molecules of the first k evaluated pairs (diagonal = pairs)."""
    rows = rows[:k]
    mol = torch.as_tensor(data.mol_features[data.mol_idx[rows]])
    text = torch.as_tensor(data.text_features[data.text_idx[rows]])
    device = next(bridge.parameters()).device
    return bridge.embed_all(text.to(device), "text") @ bridge.embed_all(mol.to(device), "molecule").T


def recall_curves(curves: dict[str, list[float]], title: str = "") -> bytes:
    """Cumulative match (Recall@k) curves, e.g. global vs within-target."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker=".", label=label)
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return png_bytes(fig)
