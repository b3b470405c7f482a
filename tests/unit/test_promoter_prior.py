"""Promoter prior: FASTA reading, strand-aware windows, k-mer and LM embeddings, the annotation substitute."""
import gzip
import itertools

import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.priors.promoter import (
    SUBSTITUTE_FOR,
    annotation_features,
    build_promoter_prior,
    bundle_sources,
    embed_annotation,
)
from gc_lib.priors.promoter_sequence import (
    embed_kmer_svd,
    embed_with_language_model,
    kmer_spectra,
    promoter_windows,
    read_fasta,
    read_promoter_fasta,
    tss_from_locations,
)

PAIR = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def revcomp(seq: str) -> str:
    return "".join(PAIR[b] for b in reversed(seq))


def random_dna(n: int, rng) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


def write_fasta(path, records, width=60, opener=open):
    with opener(path, "wt") as handle:
        for name, seq in records:
            handle.write(f">{name} some description\n")
            for i in range(0, len(seq), width):
                handle.write(seq[i:i + width] + "\n")
    return path


def hid(i: int) -> str:
    return f"ENSG{i:011d}"


def mid(i: int) -> str:
    return f"ENSMUSG{i:011d}"


@pytest.fixture
def genome(tmp_path):
    rng = np.random.default_rng(1)
    chroms = {"chr1": random_dna(300, rng), "chr2": random_dna(200, rng)}
    return write_fasta(tmp_path / "genome.fa", chroms.items()), chroms


# --- FASTA ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_read_fasta_plain_and_gzip(tmp_path, compressed):
    records = [("seq1", "ACGTNacgt" * 20), ("seq2", "GGGCCC")]
    path = write_fasta(tmp_path / ("x.fa.gz" if compressed else "x.fa"), records,
                       opener=gzip.open if compressed else open)
    assert list(read_fasta(path)) == [(n, s.upper()) for n, s in records]


def test_read_fasta_rejects_non_fasta(tmp_path):
    (tmp_path / "table.csv").write_text("gene,value\nA,1\n")
    with pytest.raises(ValueError, match="not a FASTA file"):
        list(read_fasta(tmp_path / "table.csv"))
    (tmp_path / "empty.fa").write_text("\n")
    with pytest.raises(ValueError, match="no '>' record"):
        list(read_fasta(tmp_path / "empty.fa"))
    (tmp_path / "digits.fa").write_text(">x\nACGT 12 ACGT\n")
    with pytest.raises(ValueError, match="not sequence"):
        list(read_fasta(tmp_path / "digits.fa"))


def test_read_promoter_fasta(tmp_path):
    path = write_fasta(tmp_path / "p.fa", [(f"{hid(1)}|TP53", "ACGT"), ("no_id", "AAAA"), (f"x_{hid(2)}", "ccgg")])
    table = read_promoter_fasta(path)
    assert table.to_dict("list") == {"gene_id": [hid(1), hid(2)], "sequence": ["ACGT", "CCGG"]}
    assert table.attrs["skipped"] == 1
    with pytest.raises(ValueError, match="matching"):
        read_promoter_fasta(path, id_pattern=r"ENSMUSG\d{11}")


# --- windows --------------------------------------------------------------------------------------------

def test_promoter_windows_strand_clip_and_naming(genome):
    path, chroms = genome
    c1, c2 = chroms["chr1"], chroms["chr2"]
    tss = pd.DataFrame({"gene_id": ["plus", "minus", "plus_clip", "minus_clip", "elsewhere"],
                        "chrom": ["1", "chr1", "chr2", "2", "7"],
                        "tss": [100, 150, 5, 195, 10], "strand": ["+", "-", "+", "-", "+"]})
    out = promoter_windows(path, tss, upstream=10, downstream=20)
    got = dict(zip(out["gene_id"], out["sequence"]))
    assert got["plus"] == c1[89:119]                       # 1-based 90..119: TSS is the 11th base
    assert got["plus"][10] == c1[99]
    assert got["minus"] == revcomp(c1[130:160])            # 1-based 131..160, reverse-complemented
    assert got["minus"][10] == PAIR[c1[149]]               # TSS base is the 11th, on the minus strand
    assert got["plus_clip"] == c2[0:24]                    # clipped at the chromosome start
    assert got["minus_clip"] == revcomp(c2[175:200])       # clipped at the chromosome end
    assert list(out["gene_id"]) == ["plus", "minus", "plus_clip", "minus_clip"]
    assert out.attrs["missing"] == 1 and out.attrs["missing_chromosomes"] == ["7"]


def test_promoter_windows_default_length(tmp_path):
    seq = random_dna(5000, np.random.default_rng(2))
    path = write_fasta(tmp_path / "g.fa.gz", [("1", seq)], opener=gzip.open)
    out = promoter_windows(path, pd.DataFrame({"gene_id": ["a", "b"], "chrom": ["chr1", "1"], "tss": [1000, 4000],
                                               "strand": ["+", "-"]}))
    assert out["sequence"].str.len().tolist() == [2500, 2500]
    assert out["sequence"][0] == seq[499:2999]
    assert out["sequence"][1] == revcomp(seq[2000:4500])


def test_tss_from_locations():
    locations = pd.DataFrame({"ensembl_id": ["g1", "g1", "g1", "g2", "g2"],
                              "chrom": ["1", "1", "1", "2", "2_KI270_alt"],
                              "start": [100, 100, 150, 500, 10], "end": [900, 950, 900, 800, 30],
                              "strand": ["+", "+", "+", "-", "-"]})
    out = tss_from_locations(locations)
    assert out.to_dict("list") == {"gene_id": ["g1", "g1", "g2"], "chrom": ["1", "1", "2"], "tss": [100, 150, 800],
                                   "strand": ["+", "+", "-"]}
    assert len(tss_from_locations(locations, primary_only=False)) == 4


# --- k-mers ---------------------------------------------------------------------------------------------

def python_kmer_counts(seq: str, k: int) -> np.ndarray:
    counts = np.zeros(4 ** k)
    code = {b: i for i, b in enumerate("ACGT")}
    seq = seq.upper()
    for i in range(len(seq) - k + 1):
        word = seq[i:i + k]
        if all(b in code for b in word):
            counts[sum(code[b] * 4 ** (k - 1 - j) for j, b in enumerate(word))] += 1
    return counts


@pytest.mark.parametrize("k", [1, 2, 3])
def test_kmer_spectra_matches_python(k):
    seqs = ["ACGTACGTNNACG", "AAAA", "", "acgtxTTG", "GATTACA" * 5]
    matrix = kmer_spectra(seqs, k)
    assert matrix.shape == (len(seqs), 4 ** k)
    np.testing.assert_array_equal(matrix.toarray(), np.stack([python_kmer_counts(s, k) for s in seqs]))
    # chunking across sequences gives the same matrix, and no k-mer spans two sequences
    np.testing.assert_array_equal(kmer_spectra(seqs, k, chunk_bases=5).toarray(), matrix.toarray())


def test_kmer_spectra_skips_n():
    matrix = kmer_spectra(["AANAA"], 2).toarray()[0]
    assert matrix[0] == 2 and matrix.sum() == 2        # AA twice; AN and NA skipped


def motif_promoters(rng):
    motif = "TATAAAGGCGCGCCAATCGG"
    rows = []
    for g in range(12):
        n = 2 if g in (0, 5) else 1                     # genes 0 and 5: two promoters each
        for _ in range(n):
            seq = random_dna(600, rng)
            if g in (0, 1):                             # genes 0 and 1 share a motif-rich promoter
                seq = "".join(random_dna(20, rng) + motif for _ in range(15))
            rows.append((hid(g), seq))
    return pd.DataFrame(rows, columns=["gene_id", "sequence"])


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_embed_kmer_svd_groups_shared_motif_and_is_deterministic():
    promoters = motif_promoters(np.random.default_rng(3))
    emb = embed_kmer_svd(promoters, k=4, dim=8, seed=0)
    assert emb.shape == (12, 8) and (emb.dtypes == np.float32).all() and emb.index[0] == hid(0)
    v = emb.to_numpy()
    related = cosine(v[0], v[1])
    assert all(related > cosine(v[0], v[i]) + 0.2 for i in range(2, 12))
    pd.testing.assert_frame_equal(emb, embed_kmer_svd(promoters, k=4, dim=8, seed=0))
    big = embed_kmer_svd(promoters, k=4, dim=128)
    assert big.shape[1] == 12 and big.attrs["dim"] == 12 and big.attrs["dim_requested"] == 128


# --- language model -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_dna_bert")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "A", "C", "G", "T", "N"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=64).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(path)
    return path


def test_language_model_embedding(tiny_lm):
    rng = np.random.default_rng(4)
    a1, a2, b, long = random_dna(30, rng), random_dna(12, rng), random_dna(40, rng), random_dna(100, rng)
    promoters = pd.DataFrame({"gene_id": ["gA", "gB", "gA", "gC"], "sequence": [a1, b, a2, long]})
    emb = embed_with_language_model(promoters, tiny_lm, batch_size=3)
    assert emb.shape == (3, 16) and (emb.dtypes == np.float32).all() and list(emb.index) == ["gA", "gB", "gC"]
    assert emb.attrs["max_length"] == 64 and emb.attrs["truncated"] == 1
    # per-gene mean of each promoter embedded alone (no padding: the pooling must ignore padding)
    alone = embed_with_language_model(pd.DataFrame({"gene_id": ["x1", "x2"], "sequence": [a1, a2]}), tiny_lm,
                                      batch_size=1)
    np.testing.assert_allclose(emb.loc["gA"], alone.mean(axis=0), atol=1e-5)
    assert not np.allclose(alone.loc["x1"], alone.loc["x2"])
    pd.testing.assert_frame_equal(emb, embed_with_language_model(promoters, tiny_lm, batch_size=2), atol=1e-5)


# --- annotation substitute ------------------------------------------------------------------------------

LOCATIONS = pd.DataFrame([
    (hid(1), "1", 1000, 5000, "+"), (hid(1), "chr1", 1000, 6000, "+"), (hid(1), "1", 1200, 5000, "+"),
    (hid(2), "1", 200, 1500, "-"),
    (hid(3), "1", 50_000, 60_000, "+"),
    (hid(4), "1", 300_000, 310_000, "-"),
    (hid(5), "2", 100, 900, "+"), (hid(5), "2_KI270_alt", 100, 900, "+"),
    (hid(6), "2_KI270_alt", 500, 900, "-"),
], columns=["ensembl_id", "chrom", "start", "end", "strand"])
CHIP = pd.DataFrame({"tf_id": ["TF1", "TF1", "TF2", "TF3", "TF1"],
                     "target_id": [hid(1), hid(3), hid(2), hid(99), hid(1)]})


def test_annotation_features_exact():
    f = annotation_features(LOCATIONS, chip_edges=CHIP)
    assert list(f.index) == [hid(i) for i in range(1, 6)] and f.attrs["dropped_genes"] == 1
    assert list(f.columns[:6]) == ["log1p_n_tss", "strand", "log_length", "rel_position", "log1p_density",
                                   "bidirectional"]
    np.testing.assert_allclose(np.expm1(f["log1p_n_tss"]), [2, 1, 1, 1, 1], rtol=1e-6)
    assert f["strand"].tolist() == [1, -1, 1, -1, 1]
    np.testing.assert_allclose(np.expm1(f["log_length"]), [5001, 1301, 10_001, 10_001, 801], rtol=1e-5)
    np.testing.assert_allclose(np.expm1(f["log1p_density"]), [2, 2, 2, 0, 0], atol=1e-5)
    assert f["bidirectional"].tolist() == [1, 1, 0, 0, 0]
    np.testing.assert_allclose(f["rel_position"], [1000 / 310_000, 1500 / 310_000, 50_000 / 310_000, 1, 100 / 900],
                               rtol=1e-6)
    assert [c for c in f.columns if c.startswith("chrom_")] == ["chrom_1", "chrom_2"]
    assert f["chrom_2"].tolist() == [0, 0, 0, 0, 1]
    assert [c for c in f.columns if c.startswith("tf_")] == ["tf_TF1", "tf_TF2"]
    assert f["tf_TF1"].tolist() == [1, 0, 1, 0, 0] and f["tf_TF2"].tolist() == [0, 1, 0, 0, 0]
    assert "tf_TF1" not in annotation_features(LOCATIONS).columns
    density_10kb = annotation_features(LOCATIONS, neighbourhood_bp=1000)["log1p_density"]
    np.testing.assert_allclose(np.expm1(density_10kb), [1, 1, 0, 0, 0], atol=1e-5)


def test_embed_annotation_reduces_dim_and_balances_blocks():
    f = annotation_features(LOCATIONS, chip_edges=CHIP)
    emb = embed_annotation(f, dim=128)
    assert emb.shape == (5, 5) and emb.attrs["dim"] == 5 and emb.attrs["dim_requested"] == 128
    assert emb.attrs["blocks"] == {"gene_model": 6, "chrom": 2, "chip": 2}
    pd.testing.assert_frame_equal(emb, embed_annotation(f, dim=128))
    assert embed_annotation(f, dim=3).shape == (5, 3)


# --- the prior ------------------------------------------------------------------------------------------

@pytest.fixture
def vocab():
    genes = pd.DataFrame({"gene_id": [hid(i) for i in range(1, 8)] + [mid(1), mid(2)],
                          "species": ["human"] * 7 + ["mouse"] * 2, "symbol": [f"G{i}" for i in range(9)]})
    orthologs = pd.DataFrame({"mouse_id": [mid(1), mid(2)], "human_id": [hid(1), hid(2)],
                              "homology_type": ["one2one", "one2many"]})
    return build_vocabulary(genes, orthologs)


def rows_of(table, vocab, gene):
    return table.vectors[int(vocab.encode([gene])[0])], table.mask[int(vocab.encode([gene])[0])]


def test_build_promoter_prior_substitute(vocab):
    table, human = build_promoter_prior(vocab, locations=LOCATIONS, chip_edges=CHIP, dim=4,
                                        info={"sources": bundle_sources()})
    assert table.info["substitute"] is True and table.info["substitute_for"] == SUBSTITUTE_FOR
    assert table.info["method"] == "annotation_svd" and table.info["n_genes"] == 5 and table.dim == 4
    assert "bidirectional" in table.info["features"] and table.info["sources"]["org_hs_eg_db"]["sha256"]
    np.testing.assert_allclose(np.linalg.norm(human.to_numpy(), axis=1), 1, atol=1e-5)   # standardised
    mouse, mouse_mask = rows_of(table, vocab, mid(1))
    partner, _ = rows_of(table, vocab, hid(1))
    assert mouse_mask and np.array_equal(mouse, partner) and np.any(partner)
    assert not rows_of(table, vocab, mid(2))[1]            # one2many: not transferred by default
    assert not rows_of(table, vocab, hid(6))[1] and not rows_of(table, vocab, hid(7))[1]


def test_build_promoter_prior_sequence_path(vocab):
    promoters = motif_promoters(np.random.default_rng(5))
    table, human = build_promoter_prior(vocab, promoters=promoters, locations=LOCATIONS, k=3, dim=6)
    assert table.info["substitute"] is False and "substitute_for" not in table.info
    assert table.info["method"] == "kmer_svd" and table.info["parameters"]["k"] == 3 and table.dim == 6
    assert 0 < table.info["explained_variance_ratio_sum"] <= 1
    assert np.array_equal(rows_of(table, vocab, mid(1))[0], human.loc[hid(1)].to_numpy())
    with pytest.raises(ValueError, match="needs model"):
        build_promoter_prior(vocab, promoters=promoters, method="lm")
    with pytest.raises(ValueError, match="needs promoters"):
        build_promoter_prior(vocab)


def test_build_promoter_prior_lm(vocab, tiny_lm):
    promoters = motif_promoters(np.random.default_rng(6))
    table, _ = build_promoter_prior(vocab, promoters=promoters, method="lm", model=tiny_lm)
    assert table.info["method"] == "lm" and table.info["substitute"] is False and table.dim == 16


# --- the real bundle ------------------------------------------------------------------------------------

def test_real_bundle_annotation():
    from gc_lib.inputs import orgdb
    from gc_lib.inputs.sources import SOURCES

    if not SOURCES["org_hs_eg_db"].local_path.exists():
        pytest.skip("org.Hs.eg.db is not in data/raw (fetch it with gc_lib.inputs.sources.fetch('org_hs_eg_db'))")
    locations = orgdb.gene_locations()
    f = annotation_features(locations)
    assert len(f) > 20_000 and f.notna().all().all()
    assert {f"chrom_{c}" for c in itertools.chain(range(1, 23), "XY")} <= set(f.columns)
    assert 0.05 < f["bidirectional"].mean() < 0.4          # bidirectional promoters: ~10-20 % of human genes
    assert f.loc["ENSG00000141510", "strand"] == -1 and f.loc["ENSG00000141510", "chrom_17"] == 1   # TP53
    genes = pd.DataFrame({"gene_id": f.index[::20], "species": "human", "symbol": f.index[::20]})
    table, human = build_promoter_prior(build_vocabulary(genes), locations=locations, dim=16)
    assert table.info["substitute"] and table.info["n_genes"] == len(f) and table.mask[4:].all()
