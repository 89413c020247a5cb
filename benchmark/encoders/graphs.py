"""A trainable molecule encoder: RDKit molecular graphs through a shallow GINE network (PyTorch Geometric).

ACML's asymmetric design (`../shared/papers/acml_asymmetric_contrastive_multimodal.md`): the text
encoder stays frozen and a shallow graph encoder (5 message-passing layers by default) is trained
from scratch into the shared space with the suite's loss terms. Optionally it is also aligned to a
frozen molecular view (a fingerprint such as ECFP4) with its own weighted InfoNCE term
(`align_to`, `align_weight`), so the suite can measure whether that transfer helps text retrieval.

Featurisation runs once per dataset and is cached as plain arrays (`.npz`, loaded with
`allow_pickle=False`, checksummed): atoms as integer feature codes, bonds as `edge_index` (both
directions) with bond feature codes, and per-molecule offsets. Trials receive the arrays through
the object store with the rest of `TrialData`; on the device, a batch of molecule indices becomes
one PyG mini-batch by offset arithmetic (no Python loop over molecules).

In the rest of the suite a molecule is a row of `mol_features`; for the graph encoder that row is
the molecule's index (one column), and the bridge's molecule head looks the graph up.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from benchmark.core.io import atomic_write_bytes, hash_items, sha256_bytes
from benchmark.core.settings import Strict

log = logging.getLogger(__name__)

#: name of the trainable graph encoder in configurations (`mol_encoder: {name: gin, params: {...}}`)
GRAPH_ENCODER = "gin"
#: bump when the featurisation changes (the cache key includes it)
FEATURIZER_VERSION = "1"

ELEMENTS = (
    "C",
    "N",
    "O",
    "S",
    "F",
    "Cl",
    "Br",
    "I",
    "P",
    "B",
    "Si",
    "Se",
    "Na",
    "K",
    "Li",
    "Ca",
    "Mg",
    "Zn",
    "Fe",
    "Pt",
    "Gd",
    "Co",
    "Cu",
    "As",
    "Al",
    "Bi",
    "Ag",
    "Au",
    "Hg",
    "Tc",
    "Ga",
    "Sb",
    "Ti",
    "Sr",
    "Xe",
)
HYBRIDISATIONS = ("SP", "SP2", "SP3", "SP3D", "SP3D2")
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")
STEREO = ("STEREONONE", "STEREOANY", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS")
#: (name, number of codes) of each atom feature; codes are categorical, the last code of each is "other"
ATOM_FEATURES = (
    ("element", len(ELEMENTS) + 1),
    ("degree", 7),
    ("formal_charge", 5),
    ("aromatic", 2),
    ("hybridisation", len(HYBRIDISATIONS) + 1),
    ("hydrogens", 5),
    ("in_ring", 2),
)
BOND_FEATURES = (("type", len(BOND_TYPES) + 1), ("conjugated", 2), ("in_ring", 2), ("stereo", len(STEREO) + 1))


class GraphEncoderConfig(Strict):
    """Parameters of `mol_encoder: {name: gin, params: ...}` (validated with the trial configuration)."""

    layers: int = Field(5, ge=1, le=12)
    hidden: int = Field(64, ge=8, le=2048)
    dropout: float = Field(0.0, ge=0, lt=1)
    pooling: Literal["mean", "sum", "max"] = "mean"
    #: a frozen molecule encoder to align the graph embedding to as well (ACML), e.g. 'ecfp4'; None: text only
    align_to: str | None = None
    align_weight: float = Field(0.0, ge=0)


def _code(value, choices) -> int:
    return choices.index(value) if value in choices else len(choices)


def _atom_codes(atom) -> list[int]:
    return [
        _code(atom.GetSymbol(), ELEMENTS),
        min(atom.GetDegree(), 6),
        min(max(atom.GetFormalCharge(), -2), 2) + 2,
        int(atom.GetIsAromatic()),
        _code(str(atom.GetHybridization()), HYBRIDISATIONS),
        min(atom.GetTotalNumHs(), 4),
        int(atom.IsInRing()),
    ]


def _bond_codes(bond) -> list[int]:
    return [
        _code(str(bond.GetBondType()), BOND_TYPES),
        int(bond.GetIsConjugated()),
        int(bond.IsInRing()),
        _code(str(bond.GetStereo()), STEREO),
    ]


@dataclass
class MolGraphs:
    """Every molecule of a dataset as one disjoint graph: node codes `x` (atoms x 7), `edge_index` (2 x directed
    bonds), bond codes `edge_attr`, and offsets `node_ptr` / `edge_ptr` (molecules + 1)."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    node_ptr: np.ndarray
    edge_ptr: np.ndarray

    @property
    def n_molecules(self) -> int:
        return len(self.node_ptr) - 1

    def counts(self, i: int) -> tuple[int, int]:
        """(atoms, bonds) of molecule i (each bond stored in both directions)."""
        return int(self.node_ptr[i + 1] - self.node_ptr[i]), int(self.edge_ptr[i + 1] - self.edge_ptr[i]) // 2

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: getattr(self, k) for k in ("x", "edge_index", "edge_attr", "node_ptr", "edge_ptr")})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MolGraphs:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(**{k: arrays[k] for k in ("x", "edge_index", "edge_attr", "node_ptr", "edge_ptr")})


def featurize(smiles: list[str]) -> MolGraphs:
    """RDKit graphs of structure keys (already parsed once by cleaning, so every one parses)."""
    from rdkit import Chem  # rdkit: imported only where structures are parsed

    xs, edges, attrs = [], [], []
    node_ptr, edge_ptr = [0], [0]
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise ValueError(f"cannot featurise {smi!r}: RDKit does not parse it")
        offset = node_ptr[-1]
        xs += [_atom_codes(a) for a in mol.GetAtoms()]
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx() + offset, bond.GetEndAtomIdx() + offset
            codes = _bond_codes(bond)
            edges += [(i, j), (j, i)]
            attrs += [codes, codes]
        node_ptr.append(offset + mol.GetNumAtoms())
        edge_ptr.append(len(edges))
    return MolGraphs(
        x=np.asarray(xs, dtype=np.int64).reshape(-1, len(ATOM_FEATURES)),
        edge_index=np.asarray(edges, dtype=np.int64).reshape(-1, 2).T.copy(),
        edge_attr=np.asarray(attrs, dtype=np.int64).reshape(-1, len(BOND_FEATURES)),
        node_ptr=np.asarray(node_ptr, dtype=np.int64),
        edge_ptr=np.asarray(edge_ptr, dtype=np.int64),
    )


def cached_graphs(smiles: list[str], cache) -> MolGraphs:
    """`featurize`, through the embedding cache's folder: `.npz` arrays with a sha256 sidecar (no pickle)."""

    key = f"graphs-v{FEATURIZER_VERSION}-{hash_items(list(smiles))}"
    path = cache.root / "graphs" / f"{key}.npz"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        data = path.read_bytes()
        if sha256_bytes(data) == json.loads(meta.read_text()).get("sha256"):
            graphs = MolGraphs.from_bytes(data)
            if graphs.n_molecules == len(smiles):
                return graphs
        log.warning("graph cache file %s is unusable; featurising again", path)
    graphs = featurize(list(smiles))
    data = graphs.to_bytes()
    try:  # best effort, like the embedding cache: a failed write costs a featurisation next time, not the run
        atomic_write_bytes(path, data)
        atomic_write_bytes(
            meta,
            json.dumps(
                {"sha256": sha256_bytes(data), "molecules": len(smiles), "version": FEATURIZER_VERSION}
            ).encode(),
        )
    except OSError as exc:
        log.warning("graph cache: could not save %s (%s); the run goes on without caching it", path, exc)
    return graphs


class GraphTensors:
    """`MolGraphs` on a device, and the PyG mini-batch of any molecules by index."""

    def __init__(self, graphs: MolGraphs, device: torch.device):
        as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        self.x, self.edge_index, self.edge_attr = as_t(graphs.x), as_t(graphs.edge_index), as_t(graphs.edge_attr)
        self.node_ptr, self.edge_ptr = as_t(graphs.node_ptr), as_t(graphs.edge_ptr)

    def batch(self, mols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(node codes, local edge_index, bond codes, graph id per node) of molecules `mols`, in that order."""
        n_counts = self.node_ptr[mols + 1] - self.node_ptr[mols]
        e_counts = self.edge_ptr[mols + 1] - self.edge_ptr[mols]
        new_start = torch.cumsum(n_counts, 0) - n_counts
        graph = torch.repeat_interleave(torch.arange(len(mols), device=mols.device), n_counts)
        nodes = torch.arange(int(n_counts.sum()), device=mols.device) - new_start[graph] + self.node_ptr[mols][graph]
        e_graph = torch.repeat_interleave(torch.arange(len(mols), device=mols.device), e_counts)
        e_start = torch.cumsum(e_counts, 0) - e_counts
        edges = torch.arange(int(e_counts.sum()), device=mols.device) - e_start[e_graph] + self.edge_ptr[mols][e_graph]
        shift = (new_start - self.node_ptr[mols])[e_graph]
        return self.x[nodes], self.edge_index[:, edges] + shift, self.edge_attr[edges], graph


class _CodeEmbedding(nn.Module):
    """Sum of one learned embedding per categorical feature (OGB's AtomEncoder / BondEncoder scheme)."""

    def __init__(self, sizes: tuple[tuple[str, int], ...], dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for _, n in sizes)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return sum(table(codes[:, i]) for i, table in enumerate(self.tables))


class GraphEncoder(nn.Module):
    """GINE message passing (PyG `GINEConv`), batch norm, ReLU and dropout per layer, then graph pooling."""

    def __init__(self, cfg: GraphEncoderConfig):
        super().__init__()
        from torch_geometric.nn import GINEConv  # torch_geometric: heavy, imported only for the graph encoder

        self.cfg = cfg
        self.atoms = _CodeEmbedding(ATOM_FEATURES, cfg.hidden)
        self.bonds = nn.ModuleList(_CodeEmbedding(BOND_FEATURES, cfg.hidden) for _ in range(cfg.layers))
        self.convs = nn.ModuleList(
            GINEConv(
                nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden)),
                train_eps=True,
            )
            for _ in range(cfg.layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(cfg.hidden) for _ in range(cfg.layers))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, edge_index, edge_attr, graph, n_graphs: int) -> torch.Tensor:
        from torch_geometric.nn import (  # torch_geometric: heavy, imported only for the graph encoder
            global_add_pool,
            global_max_pool,
            global_mean_pool,
        )

        h = self.atoms(x)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = conv(h, edge_index, self.bonds[i](edge_attr))
            h = norm(h)
            h = self.dropout(torch.relu(h) if i < len(self.convs) - 1 else h)
        pool = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}[self.cfg.pooling]
        return pool(h, graph, size=n_graphs)


class GraphHead(nn.Module):
    """The bridge's molecule head for the graph encoder: rows of molecule indices -> GINE -> pooled -> `head`."""

    def __init__(self, cfg: GraphEncoderConfig, head: nn.Module, graphs: GraphTensors):
        super().__init__()
        self.encoder, self.head = GraphEncoder(cfg), head
        self.graphs = graphs  # not a parameter, not in the state dict

    def pooled(self, rows: torch.Tensor) -> torch.Tensor:
        """Pooled graph embeddings (before the head) of the molecules whose indices `rows` hold (one column)."""
        mols = rows.reshape(-1).round().long()
        unique, inverse = torch.unique(mols, return_inverse=True)  # a molecule twice in a batch is encoded once
        x, edge_index, edge_attr, graph = self.graphs.batch(unique)
        return self.encoder(x, edge_index, edge_attr, graph, len(unique))[inverse]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(rows))


def graph_config(params: dict) -> GraphEncoderConfig:
    return GraphEncoderConfig.model_validate(params)


def index_features(n_molecules: int) -> np.ndarray:
    """The suite-side molecule features of the graph encoder: each molecule's index, one float32 column."""
    if n_molecules >= 2**24:
        raise ValueError("more than 2**24 molecules cannot be indexed exactly in float32")
    return np.arange(n_molecules, dtype=np.float32)[:, None]


def graphs_digest(graphs: MolGraphs) -> str:
    return hashlib.sha256(graphs.to_bytes()).hexdigest()[:16]
