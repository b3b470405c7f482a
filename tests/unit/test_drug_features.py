"""Morgan fingerprints of a few real molecules: shape, order, canonical SMILES, bit count and clear errors."""
import sys

import numpy as np
import pandas as pd
import pytest

from gc_lib.tasks.drug_features import smiles_fingerprints

pytest.importorskip("rdkit")

DRUGS = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
    "ethanol": "CCO",
    "imatinib": "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
}


def test_shape_dtype_order_and_columns():
    table = smiles_fingerprints(DRUGS)
    assert table.shape == (4, 1024) and (table.dtypes == np.float32).all()
    assert list(table.index) == list(DRUGS) and list(table.columns[:2]) == ["bit0", "bit1"]
    assert table.columns[-1] == "bit1023" and set(np.unique(table.to_numpy())) <= {0.0, 1.0}
    assert (table.sum(axis=1) > 0).all()
    assert table.loc["imatinib"].sum() > table.loc["ethanol"].sum()  # a larger molecule sets more bits
    reordered = smiles_fingerprints(pd.Series(DRUGS).iloc[::-1])
    assert list(reordered.index) == list(DRUGS)[::-1]
    pd.testing.assert_frame_equal(reordered.loc[list(DRUGS)], table)


def test_same_molecule_written_differently_gives_the_same_row_and_different_molecules_differ():
    table = smiles_fingerprints({"a": "CCO", "b": "OCC", "c": "C(C)O", "aspirin": DRUGS["aspirin"],
                                 "caffeine": DRUGS["caffeine"]})
    np.testing.assert_array_equal(table.loc["a"], table.loc["b"])
    np.testing.assert_array_equal(table.loc["a"], table.loc["c"])
    assert not np.array_equal(table.loc["a"], table.loc["aspirin"])
    assert not np.array_equal(table.loc["aspirin"], table.loc["caffeine"])


def test_bit_count_and_radius_are_respected():
    small = smiles_fingerprints(DRUGS, n_bits=64)
    assert small.shape == (4, 64) and small.columns[-1] == "bit63"
    radius0, radius3 = smiles_fingerprints(DRUGS, radius=0), smiles_fingerprints(DRUGS, radius=3)
    assert (radius0.sum(axis=1) < radius3.sum(axis=1)).all()  # wider neighbourhoods add bits


def test_missing_and_unparsable_smiles_raise_naming_every_drug(capfd):
    bad = {**DRUGS, "nothing": None, "blank": "  ", "nan": np.nan, "garbage": "C1CC(", "words": "not a molecule"}
    with pytest.raises(ValueError) as error:
        smiles_fingerprints(bad)
    message = str(error.value)
    assert "missing SMILES for ['nothing', 'blank', 'nan']" in message
    assert "cannot parse for ['garbage', 'words']" in message
    assert "aspirin" not in message
    assert "SMILES Parse Error" not in capfd.readouterr().err  # RDKit's log was silenced while parsing
    from rdkit import Chem
    Chem.MolFromSmiles("C1CC(")                                # and is enabled again afterwards
    assert "SMILES Parse Error" in capfd.readouterr().err


def test_bad_arguments_and_absent_rdkit(monkeypatch):
    with pytest.raises(ValueError, match="n_bits must be a positive integer"):
        smiles_fingerprints(DRUGS, n_bits=0)
    with pytest.raises(ValueError, match="radius must be an integer"):
        smiles_fingerprints(DRUGS, radius=-1)
    with pytest.raises(ValueError, match=r"repeated: \['x'\]"):
        smiles_fingerprints(pd.Series(["CCO", "CCC"], index=["x", "x"]))
    monkeypatch.setitem(sys.modules, "rdkit", None)
    with pytest.raises(ImportError, match=r"pip install 'gc_lib\[drug\]'"):
        smiles_fingerprints(DRUGS)
