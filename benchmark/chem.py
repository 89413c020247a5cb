"""RDKit helpers: parsing, salt stripping and Bemis-Murcko scaffolds.

The largest-fragment canonical SMILES is the *structure key*: the identity of a
molecule for de-duplication, galleries and splits (salt forms collapse onto it).
"""

from __future__ import annotations

from functools import lru_cache

from rdkit import Chem, RDLogger
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")  # invalid SMILES are counted and reported, not printed


def mol_from_smiles(smiles: str) -> Chem.Mol | None:
    if not isinstance(smiles, str) or not smiles.strip():
        return None
    return Chem.MolFromSmiles(smiles.strip())


@lru_cache(maxsize=1)
def _fragment_chooser() -> rdMolStandardize.LargestFragmentChooser:
    return rdMolStandardize.LargestFragmentChooser(preferOrganic=True)


def structure_key(smiles: str) -> tuple[str | None, bool]:
    """(canonical isomeric SMILES of the largest fragment, whether a salt/solvent was stripped).

    Returns (None, False) when RDKit cannot parse the SMILES.
    """
    mol = mol_from_smiles(smiles)
    if mol is None:
        return None, False
    stripped = len(Chem.GetMolFrags(mol)) > 1
    if stripped:
        mol = _fragment_chooser().choose(mol)
    return Chem.MolToSmiles(mol), stripped


def murcko_scaffold(key: str) -> str:
    """Bemis-Murcko scaffold SMILES (generic-free, chirality kept off); '' for acyclic molecules."""
    mol = Chem.MolFromSmiles(key)
    if mol is None:
        raise ValueError(f"cannot parse structure key {key!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)
