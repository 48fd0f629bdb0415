"""``--hf-model DIR`` with a recurrent family (Mamba, RWKV: causal LMs, no sequence-classification class in
transformers): the folder is loaded as a causal LM, its next-token logits after each sentence are explained with the
family's default composite (RecurrentLRP), the report's and the dataset's words are those of ``seqlrp.explain_text``
on each sentence alone, and the explained "classes" are named by the tokenizer's tokens."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import seqlrp
from seqlrp.cli import main
from seqlrp.recurrent import MambaLRP, RecurrentLRP

from ..recurrent.models import tiny_lm
from ..transformers.tiny import tiny_tokenizer

transformers = pytest.importorskip("transformers")

#: 16 word pieces: the tiny LMs' vocabulary size
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "good", "bad", "film", "plot", "wonder",
              "##ful", "not", "great", "very"]
SENTENCES = ["a wonderful film", "bad", "the plot", "not good", "very very bad"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_recurrent")
    for family in ("mamba", "rwkv"):
        tiny_lm(family).float().save_pretrained(root / family)
        tiny_tokenizer(root / family, VOCABULARY, token_types=False)
    (root / "input.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return root


def load(folder):
    return (transformers.AutoModelForCausalLM.from_pretrained(folder).eval(),
            transformers.AutoTokenizer.from_pretrained(folder))


@pytest.mark.parametrize("family", ["mamba", "rwkv"])
def test_report_words_are_the_next_token_explanation_of_each_sentence_alone(folders, captured, family):
    out = folders / f"{family}.html"
    assert main(["explain-text", "--hf-model", str(folders / family), "--input", str(folders / "input.txt"),
                 "--out", str(out), "--batch-size", "2"]) == 0
    model, tokenizer = load(folders / family)
    assert len(captured) == len(SENTENCES)
    for sentence, (shown, index) in zip(SENTENCES, captured, strict=True):
        (method, result), = shown.items()
        assert method == repr(RecurrentLRP(epsilon=1e-6))
        alone = seqlrp.explain_text(model, tokenizer([sentence], return_tensors="pt"),
                                    composite=RecurrentLRP(epsilon=1e-6), tokenizer=tokenizer)
        assert int(result.target[index]) == int(alone.output[0].argmax())  # (the predicted next token)
        words, expected = result.words[index], alone.words[0]
        assert [w.text for w in words] == [w.text for w in expected]
        scale = max(abs(w.relevance) for w in expected)
        assert all(abs(a.relevance - b.relevance) <= 1e-6 * scale for a, b in zip(words, expected, strict=True))
    page = out.read_text(encoding="utf-8")
    names = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    explained = names[int(captured[0][0][repr(RecurrentLRP(epsilon=1e-6))].target[captured[0][1]])]
    assert f"{explained} (" in page  # (the next token named by the tokenizer)


def test_the_composite_can_be_chosen_and_the_dataset_rows_match(folders, tmp_path):
    folder = folders / "mamba"
    assert main(["explain-dataset", "--hf-model", str(folder), "--input", str(folders / "input.txt"),
                 "--composite", "mambalrp", "--out", str(tmp_path / "out"), "--batch-size", "2"]) == 0
    rows = pq.read_table(tmp_path / "out").to_pylist()
    model, tokenizer = load(folder)
    assert [r["text"] for r in sorted(rows, key=lambda r: r["id"])] == SENTENCES
    for row in rows:
        alone = seqlrp.explain_text(model, tokenizer([row["text"]], return_tensors="pt"),
                                    composite=MambaLRP(epsilon=1e-6), tokenizer=tokenizer)
        assert row["words"] == [w.text for w in alone.words[0]] and row["target"] == int(alone.target)
        scale = float(alone.relevance.abs().max())
        assert np.allclose(row["relevance"], [w.relevance for w in alone.words[0]], rtol=1e-5, atol=1e-6 * scale)


def test_an_image_preset_is_refused_naming_the_presets(folders, capsys):
    assert main(["explain-dataset", "--hf-model", str(folders / "rwkv"), "--input", str(folders / "input.txt"),
                 "--composite", "epsilon_plus_flat", "--out", "unused"]) != 0
    assert "recurrentlrp" in capsys.readouterr().err
