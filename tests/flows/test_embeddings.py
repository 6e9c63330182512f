import numpy as np

from flows.embeddings import EMBEDDING_DIM, HashingEmbedder


def test_hashing_embeddings_are_normalised_deterministic_rows():
    e = HashingEmbedder()
    m = e.embed(["where is my parcel", "", "reset my password"])
    assert m.shape == (3, EMBEDDING_DIM) and m.dtype == np.float32
    assert np.allclose(np.linalg.norm(m[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert np.allclose(m[1], 0.0)  # nothing to say: the zero vector, not NaN
    assert np.array_equal(m, HashingEmbedder().embed(["where is my parcel", "", "reset my password"]))


def test_similar_questions_are_closer_than_unrelated_ones_even_with_typos():
    e = HashingEmbedder()
    a, b, c = e.embed(["I forgot my password", "i forgott my pasword", "which payment methods do you take"])
    assert a @ b > 0.5
    assert a @ b > a @ c + 0.3


def test_thesaurus_maps_customer_words_to_article_words():
    e = HashingEmbedder()
    q, doc, other = e.embed(["reimbursement", "refund", "newsletter"])
    assert q @ doc > 0.6 > q @ other
