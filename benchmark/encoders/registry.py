"""Encoder registry: built-ins plus third-party plugins found through entry points.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."benchmark.encoders"]
    my-encoder = "my_package:MyEncoder"

where the object is a class or factory called as `factory(name=<entry-point name>, **params)`
that returns an `Encoder`. Only installed entry points are loaded; configuration files name
encoders, never import paths.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from benchmark.core.errors import EncoderError
from benchmark.core.registry import Registry
from benchmark.encoders import language_models as lm
from benchmark.encoders import molecular, pretrained
from benchmark.encoders.base import Encoder

ENTRY_POINT_GROUP = "benchmark.encoders"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderEntry:
    factory: Callable[..., Encoder]
    modality: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)


def _builtin_registry() -> Registry[EncoderEntry]:
    reg: Registry[EncoderEntry] = Registry("encoder")

    def add(name: str, factory, modality: str, description: str, /, **defaults):
        reg.register(name, EncoderEntry(factory, modality, description, defaults))

    add(
        "ecfp4",
        molecular.MorganFingerprint,
        "molecule",
        "ECFP4: Morgan radius 2, 2048 bits (default)",
        radius=2,
        n_bits=2048,
    )
    add(
        "ecfp4-chiral",
        molecular.MorganFingerprint,
        "molecule",
        "ECFP4 with chirality: stereoisomers no longer share their bits (ecfp4 ignores chirality)",
        radius=2,
        n_bits=2048,
        chirality=True,
    )
    add("ecfp6", molecular.MorganFingerprint, "molecule", "ECFP6: Morgan radius 3, 2048 bits", radius=3, n_bits=2048)
    add(
        "fcfp4",
        molecular.MorganFingerprint,
        "molecule",
        "FCFP4: feature Morgan radius 2, 2048 bits",
        radius=2,
        n_bits=2048,
        features=True,
    )
    add(
        "morgan-count",
        molecular.MorganFingerprint,
        "molecule",
        "count-based Morgan radius 2, 2048",
        radius=2,
        n_bits=2048,
        counts=True,
    )
    add("maccs", molecular.MACCSKeys, "molecule", "MACCS keys (167 bits)")
    add("atom-pair", molecular.GeneratorFingerprint, "molecule", "atom-pair fingerprint, 2048 bits", kind="atom_pair")
    add(
        "torsion",
        molecular.GeneratorFingerprint,
        "molecule",
        "topological-torsion fingerprint, 2048 bits",
        kind="torsion",
    )
    add("rdkit2d", molecular.RDKit2DDescriptors, "molecule", "RDKit 2D descriptors, standardised on training molecules")
    add(
        "chemberta",
        lm.TransformerEncoder,
        "molecule",
        f"ChemBERTa over SMILES ({lm.CHEMBERTA}; needs the hub or a local folder)",
        model=lm.CHEMBERTA,
        modality="molecule",
        pooling="mean",
    )
    add(
        "hf-smiles",
        lm.TransformerEncoder,
        "molecule",
        "any transformers SMILES model: model=<hub name or folder>",
        modality="molecule",
    )
    add(
        "minilm-smiles",
        lm.SentenceTransformerEncoder,
        "molecule",
        "offline MiniLM applied to SMILES (shares minilm's space)",
        modality="molecule",
        space="all-MiniLM-L6-v2",
    )
    add(
        "gin",
        molecular.GraphInput,
        "molecule",
        "trainable 5-layer GINE graph encoder over RDKit graphs (ACML; PyTorch "
        "Geometric), trained with the bridge: layers, hidden, dropout, pooling, align_to, align_weight",
    )
    add(
        "chemnet",
        pretrained.ChemNetEncoder,
        "molecule",
        "ChemNet (fcd-torch): pretrained SMILES network, 512-d, offline",
    )
    add(
        "wordllama",
        pretrained.WordLlamaEncoder,
        "text",
        "WordLlama l2_supercat: static token embeddings, 256-d, offline, no length limit",
    )
    add(
        "minilm",
        lm.SentenceTransformerEncoder,
        "text",
        "offline all-MiniLM-L6-v2 (default text encoder)",
        space="all-MiniLM-L6-v2",
    )
    add(
        "sentence-transformer",
        lm.SentenceTransformerEncoder,
        "text",
        "any sentence-transformers model: model=<hub name or folder>",
    )
    add(
        "pubmedbert",
        lm.TransformerEncoder,
        "text",
        f"PubMedBERT, CLS pooling ({lm.PUBMEDBERT}; paper's choice, needs the hub)",
        model=lm.PUBMEDBERT,
        pooling="cls",
    )
    add(
        "s-biomed-roberta",
        lm.SentenceTransformerEncoder,
        "text",
        f"S-Biomed-RoBERTa-STSB ({lm.S_BIOMED_ROBERTA}; paper's choice, needs the hub)",
        model=lm.S_BIOMED_ROBERTA,
    )
    add(
        "hf-text",
        lm.TransformerEncoder,
        "text",
        "any transformers text model: model=<hub name or folder>, pooling=cls|mean",
    )
    add("tfidf", lm.TfidfEncoder, "text", "TF-IDF word 1-2 grams, fitted on training texts")
    add(
        "tfidf-svd",
        lm.TfidfEncoder,
        "text",
        "TF-IDF + truncated SVD to 256 dims, fitted on training texts",
        svd_components=256,
    )
    return reg


#: plugins whose import failed, by entry-point name: the message a run that asks for one fails with
_BROKEN: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def encoder_registry() -> Registry[EncoderEntry]:
    """Built-ins, then every installed `benchmark.encoders` entry point (duplicates refused). A plugin that fails
    to import is named in a warning and left out: only runs that ask for it fail (`check_encoder_name`)."""
    reg = _builtin_registry()
    _BROKEN.clear()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = ep.load()
        except Exception as exc:
            _BROKEN[ep.name] = (
                f"encoder plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}. "
                "Fix or uninstall the plugin package."
            )
            log.warning("%s Runs that do not use it go on.", _BROKEN[ep.name])
            continue
        modality = getattr(factory, "modality", "?")
        doc = getattr(factory, "description", None) or (factory.__doc__ or "").strip().splitlines() or [""]
        description = doc if isinstance(doc, str) else doc[0]
        dist = getattr(ep, "dist", None)
        origin = f"plugin {dist.name if dist else ep.value}"
        reg.register(ep.name, EncoderEntry(factory, modality, description), origin=origin)
    return reg


def broken_plugins() -> dict[str, str]:
    """Plugins that failed to import, with why (after the registry is loaded)."""
    encoder_registry()
    return dict(_BROKEN)


def check_encoder_name(name: str) -> EncoderEntry:
    """The registered entry; a plugin that failed to import is named with its error, other unknown names get the
    closest matches."""
    reg = encoder_registry()
    if name not in reg and name in _BROKEN:
        raise EncoderError(_BROKEN[name])
    return reg.get(name)


def build_encoder(name: str, **params: Any) -> Encoder:
    """Instantiate a registered encoder; `params` override the entry's defaults."""
    entry = check_encoder_name(name)
    try:
        encoder = entry.factory(name=name, **{**entry.defaults, **params})
    except TypeError as exc:
        raise EncoderError(f"encoder {name!r} does not accept parameters {params}: {exc}") from exc
    if not isinstance(encoder, Encoder) or encoder.modality not in ("molecule", "text"):
        raise EncoderError(
            f"encoder {name!r} from {encoder_registry().origin(name)} does not follow the encoder protocol "
            "(name, modality 'molecule'|'text', params, encode(list[str]) -> array)"
        )
    return encoder


def encoders_of(modality: str) -> list[str]:
    reg = encoder_registry()
    return [n for n in reg.names() if reg.get(n).modality == modality]
