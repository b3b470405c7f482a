"""gc_lib.perturb on a contract AnnData: genes by symbol, every kind, goal states from labels, results in uns."""
import numpy as np
import pytest
from synthetic import HUMAN, two_programmes

import gc_lib
from gc_lib.corpus.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def adata():
    return two_programmes(40, HUMAN, "human", 3)


def test_deletion_by_symbol_writes_tables_to_uns(tiny_checkpoint, adata):
    out = gc_lib.perturb(adata, tiny_checkpoint, ["s1", "s12"], batch_size=7, copy=True, progress=False)
    cells, genes = out.uns["perturbation"]["cells"], out.uns["perturbation"]["genes"]
    assert set(cells["name"]) <= {"s1", "s12"} and (cells["n_present"] == 1).all()
    assert (cells["cell_shift"] >= 0).all() and len(cells) > 0
    assert {"gene", "mean_shift", "n_cells"} <= set(genes.columns) and "s1" not in set(genes.loc[genes["name"] == "s1",
                                                                                                   "gene"])
    assert out.obsm["perturbation_base"].shape == (adata.n_obs, 16)
    tokens = Tokenizer.load(tiny_checkpoint).vocab.encode([HUMAN[1], HUMAN[12]])
    assert out.uns["perturbation"]["params"]["genes"] == {"s1": tokens[0], "s12": tokens[1]}


def test_overexpression_toward_a_labelled_goal(tiny_checkpoint, adata):
    out = gc_lib.perturb(adata, tiny_checkpoint, ["s2", "s13"], kind="overexpress", combine=True, state_key="label",
                         goal="B", alternatives=["A"], copy=True, progress=False)
    cells = out.uns["perturbation"]["cells"]
    assert list(cells["name"].unique()) == ["s2+s13"] and len(cells) == adata.n_obs
    np.testing.assert_allclose(cells["goal_score"], cells["toward_goal"] - cells["toward_A"])


def test_unknown_genes_and_missing_states_are_refused(tiny_checkpoint, adata):
    with pytest.raises(ValueError, match="not a token"):
        gc_lib.perturb(adata, tiny_checkpoint, ["NOPE"], copy=True, progress=False)
    with pytest.raises(ValueError, match="state_key"):
        gc_lib.perturb(adata, tiny_checkpoint, ["s1"], goal="B", copy=True, progress=False)
