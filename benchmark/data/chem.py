"""RDKit helpers: parsing, salt stripping and Bemis-Murcko scaffolds.

The largest-fragment canonical SMILES is the *structure key*: the identity of a
molecule for de-duplication, galleries and splits (salt forms collapse onto it).

Hostile structures cannot hang or crash a run: heavy atoms are counted from the SMILES text
(no RDKit call) and structures above `MAX_HEAVY_ATOMS` are dropped before RDKit sees them (RDKit
segfaults writing a 20,000-atom chain, and scaffolds grow about as n^3); structures that are
large but allowed are parsed in a child process with a time limit (`structure_keys`).
"""

from __future__ import annotations

import json
import logging
import re
import select
import subprocess
import sys
from collections import Counter
from functools import lru_cache

from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")  # invalid SMILES are counted and reported, not printed
log = logging.getLogger(__name__)

#: structures with more heavy atoms are dropped before any RDKit call (approved drugs: at most 476;
#: phase 1-4 candidates: at most 508)
MAX_HEAVY_ATOMS = 1000
#: structures with more heavy atoms (but within the maximum) are parsed in a child process with a time limit
GUARDED_HEAVY_ATOMS = 600
#: seconds RDKit may spend on one guarded structure
RDKIT_SECONDS = 30.0

# atoms of a SMILES string: bracket atoms, the organic subset (two-letter halogens first), aromatic atoms, '*'
_ATOM = re.compile(r"\[(\d*)([A-Z][a-z]?|[a-z][a-z]?|\*)[^\]]*\]|Br|Cl|[BCNOPSFI]|[bcnops]|\*")


def heavy_atom_count(smiles: str) -> int:
    """Heavy atoms written in a SMILES, counted from the text alone (explicit [H], [2H] are not heavy)."""
    count = 0
    for match in _ATOM.finditer(smiles):
        symbol = match.group(2)
        if symbol is None or symbol != "H":
            count += 1
    return count


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


def structure_keys(
    smiles: list[str], *, max_heavy_atoms: int = MAX_HEAVY_ATOMS, seconds: float = RDKIT_SECONDS
) -> tuple[list[str | None], list[bool], list[str | None]]:
    """`structure_key` of every SMILES, bounded: (keys, stripped flags, drop reasons).

    A reason is 'too_large' (above `max_heavy_atoms`, never given to RDKit), 'rdkit_timeout' (a guarded
    structure RDKit did not finish within `seconds`, or crashed on), 'invalid_smiles', or None.
    """
    keys: list[str | None] = []
    flags: list[bool] = []
    reasons: list[str | None] = []
    guarded: dict[int, str] = {}
    for i, smi in enumerate(smiles):
        atoms = heavy_atom_count(smi) if isinstance(smi, str) else 0
        if atoms > max_heavy_atoms:
            keys.append(None), flags.append(False), reasons.append("too_large")
            continue
        if atoms > GUARDED_HEAVY_ATOMS:
            guarded[i] = smi
            keys.append(None), flags.append(False), reasons.append(None)
            continue
        key, stripped = structure_key(smi)
        keys.append(key), flags.append(stripped), reasons.append(None if key else "invalid_smiles")
    for i, (key, stripped, reason) in _guarded_keys(guarded, seconds).items():
        keys[i], flags[i], reasons[i] = key, stripped, reason
    return keys, flags, reasons


def _guarded_keys(guarded: dict[int, str], seconds: float) -> dict[int, tuple[str | None, bool, str | None]]:
    """Structure keys computed in a child process (`python -m benchmark.chem`), one structure at a time with a
    time limit each; a child that times out or dies (RDKit can segfault) is replaced and the structure dropped."""
    out: dict[int, tuple[str | None, bool, str | None]] = {}
    worker = None
    try:
        for i, smi in guarded.items():
            worker = worker or _Worker()
            answer = worker.ask(smi, seconds)
            if answer is None:
                log.warning(
                    "dropped a structure of %d heavy atoms: RDKit did not finish within %gs or crashed",
                    heavy_atom_count(smi),
                    seconds,
                )
                out[i] = (None, False, "rdkit_timeout")
                worker.close()
                worker = None
            else:
                key, stripped = answer
                out[i] = (key, stripped, None if key else "invalid_smiles")
    finally:
        if worker is not None:
            worker.close()
    return out


class _Worker:
    """A child Python answering one SMILES per line with a JSON line [key, stripped]."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.data.chem"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.ask("C", 120.0)  # started and RDKit imported: its start-up is not a structure's time

    def ask(self, smiles: str, seconds: float):
        try:
            self.proc.stdin.write(smiles.replace("\n", " ") + "\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        line = self.proc.stdout.readline() if ready else ""
        return tuple(json.loads(line)) if line else None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _serve() -> None:
    """The child's loop (`python -m benchmark.chem`)."""

    for line in sys.stdin:
        print(json.dumps(structure_key(line.strip())), flush=True)


def murcko_scaffold(key: str) -> str:
    """Bemis-Murcko scaffold SMILES (generic-free, chirality kept off); '' for acyclic molecules."""
    mol = Chem.MolFromSmiles(key)
    if mol is None:
        raise ValueError(f"cannot parse structure key {key!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


#: ECFP4 as in the paper: Morgan radius 2 folded to 2048 bits (the `ecfp4` encoder uses the same values)
ECFP4_RADIUS, ECFP4_BITS = 2, 2048


def fingerprint_collisions(keys: list[str], *, chirality: bool = False) -> int:
    """How many molecules share their ECFP4 bits with at least one other molecule of `keys`.

    As a query or a gallery item such a molecule can only tie with its twin: ECFP4 ignores chirality, so
    stereoisomers collide unless `chirality` is set (the `ecfp4-chiral` encoder). Unparseable keys are skipped.
    """
    generator = rdFingerprintGenerator.GetMorganGenerator(
        radius=ECFP4_RADIUS, fpSize=ECFP4_BITS, includeChirality=chirality
    )
    bits = Counter()
    for key in keys:
        mol = Chem.MolFromSmiles(key)
        if mol is not None:
            bits[generator.GetFingerprintAsNumPy(mol).tobytes()] += 1
    return sum(n for n in bits.values() if n > 1)


if __name__ == "__main__":
    _serve()
