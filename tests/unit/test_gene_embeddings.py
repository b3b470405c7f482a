"""Gene embeddings by layer (contextual, averaged by gene identity) and the model's input vectors."""
import numpy as np
import torch
from test_perturb import random_cells, tiny_model

from gc_lib.tasks.embedding import encode_cells
from gc_lib.tasks.gene_embeddings import contextual_gene_embeddings, input_gene_embeddings


def test_contextual_gene_embeddings_average_by_identity_and_match_encode():
    model, cells = tiny_model(), random_cells()
    layers, count = contextual_gene_embeddings(model, cells, [0, 1, 2], batch_size=4)
    _, sums, counts = encode_cells(model, cells, batch_size=3, device="cpu")
    seen = counts > 0
    np.testing.assert_array_equal(count, counts)
    np.testing.assert_allclose(layers[2][seen], sums[seen] / counts[seen, None], atol=1e-5)   # last = encode()
    assert np.isnan(layers[1][~seen]).all() and not np.allclose(layers[0][seen], layers[1][seen])
    once = [(c, j) for c in range(len(cells)) for j, t in enumerate(cells.ids[c]) if count[t] == 1]
    assert once
    for c, j in once:                                                    # a token of one cell: its own state
        states = model.embed_tokens(torch.as_tensor(cells.ids[c])[None], torch.as_tensor(cells.values[c])[None],
                                    torch.as_tensor(cells.species[c:c + 1]))
        np.testing.assert_allclose(layers[0][cells.ids[c][j]], states[0, 1 + j].detach().numpy(), atol=1e-5)
    inputs = input_gene_embeddings(model, [5, 33])
    assert inputs.shape == (2, 32) and np.isfinite(inputs).all()        # 33: a token no cell holds


def test_cell_tokens_to_csr_holds_each_cells_values_at_its_tokens():
    cells = random_cells()
    matrix = cells.to_csr(40)
    assert matrix.shape == (len(cells), 40)
    for c in range(len(cells)):
        np.testing.assert_array_equal(matrix[c, cells.ids[c]].toarray().ravel(), cells.values[c])
        assert matrix[c].nnz == len(cells.ids[c])
    counts = cells.token_counts(40)  # how many cells hold each token
    assert counts.shape == (40,)
    assert counts.tolist() == [sum(t in set(ids.tolist()) for ids in cells.ids) for t in range(40)]
    assert cells.subset(np.zeros(len(cells), bool)).token_counts(40).tolist() == [0] * 40
