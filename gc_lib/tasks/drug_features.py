"""Morgan (ECFP-like) bit fingerprints of drugs from their SMILES strings (notebook 08, drug response).

A dose-response model that knows a drug only by a learned embedding cannot say anything about a drug it has not
seen; a description of the molecule itself can. The extended-connectivity fingerprint (ECFP; Rogers & Hahn,
"Extended-Connectivity Fingerprints", *J. Chem. Inf. Model.* 50:742-754, 2010) hashes every atom's circular
neighbourhood up to ``radius`` bonds into a fixed-length bit vector, so that molecules sharing substructures share
bits. DeepCE (Pham et al., "A deep learning framework for high-throughput mechanism-driven phenotype compound
screening and its application to COVID-19 drug repurposing", *Nature Machine Intelligence* 3:247-257, 2021) encoded
each drug with a graph convolution over the molecule; a fingerprint is the compact, training-free stand-in here.

RDKit is an optional dependency (``pip install 'gc_lib[drug]'``), imported only when a fingerprint is computed. The
fingerprints come from RDKit's current generator API (``rdFingerprintGenerator.GetMorganGenerator``), not the
deprecated ``AllChem.GetMorganFingerprintAsBitVect``.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np
import pandas as pd


def _rdkit():
    """RDKit's ``Chem``, ``RDLogger`` and ``rdFingerprintGenerator`` modules, or an ImportError saying what to do."""
    try:
        from rdkit import Chem, RDLogger
        from rdkit.Chem import rdFingerprintGenerator
    except ImportError as error:
        raise ImportError("drug fingerprints need the optional dependency rdkit: pip install 'gc_lib[drug]'") from error
    return Chem, RDLogger, rdFingerprintGenerator


@contextmanager
def _quiet_rdkit(rd_logger):
    """Silence RDKit's log (it writes SMILES parse errors to stderr) and re-enable it afterwards, even on error."""
    rd_logger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        rd_logger.EnableLog("rdApp.*")


def _is_missing(value) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or not str(value).strip()


def _parse_all(names: list[str], smiles: list, chem, rd_logger) -> list:
    """One RDKit molecule per drug; a ValueError naming every drug whose SMILES is missing or does not parse."""
    molecules, missing, unparsable = [], [], []
    with _quiet_rdkit(rd_logger):
        for name, text in zip(names, smiles):
            if _is_missing(text):
                missing.append(name)
                continue
            molecule = chem.MolFromSmiles(str(text).strip())
            if molecule is None or molecule.GetNumAtoms() == 0:
                unparsable.append(name)
            molecules.append(molecule)
    if missing or unparsable:
        problems = ([f"missing SMILES for {missing}"] if missing else []) + \
            ([f"SMILES that RDKit cannot parse for {unparsable}"] if unparsable else [])
        raise ValueError("; ".join(problems))
    return molecules


def smiles_fingerprints(smiles: Mapping[str, str] | pd.Series, *, radius: int = 2, n_bits: int = 1024) -> pd.DataFrame:
    """Morgan bit fingerprints (drugs × ``n_bits``, float32 0/1) of drugs given as name → SMILES string.

    ``smiles``: a mapping or pandas Series from drug name to SMILES; the rows keep its order and its names.
    ``radius``: the neighbourhood radius in bonds (2 gives ECFP4-like bits); ``n_bits``: the fingerprint length.
    Columns are ``bit0 … bit{n_bits - 1}``. The same molecule written differently (``OCC`` and ``CCO``) gets the
    same row, as RDKit canonicalises the molecule before hashing. Raises a ValueError naming every drug whose SMILES
    is missing, empty or unparsable (RDKit's own parse messages are silenced while parsing), and an ImportError when
    rdkit is not installed.
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be an integer ≥ 0, got {radius!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 1:
        raise ValueError(f"n_bits must be a positive integer, got {n_bits!r}")
    table = smiles if isinstance(smiles, pd.Series) else pd.Series(dict(smiles), dtype=object)
    if table.index.has_duplicates:
        repeated = sorted({str(name) for name in table.index[table.index.duplicated()]})
        raise ValueError(f"drug names must be unique; repeated: {repeated}")
    names = [str(name) for name in table.index]
    chem, rd_logger, fingerprint_generator = _rdkit()
    molecules = _parse_all(names, list(table.to_numpy()), chem, rd_logger)
    generator = fingerprint_generator.GetMorganGenerator(radius=int(radius), fpSize=int(n_bits))
    bits = np.zeros((len(names), int(n_bits)), dtype=np.float32)
    for row, molecule in enumerate(molecules):
        bits[row] = generator.GetFingerprintAsNumPy(molecule)
    return pd.DataFrame(bits, index=table.index.copy(), columns=[f"bit{i}" for i in range(int(n_bits))])
