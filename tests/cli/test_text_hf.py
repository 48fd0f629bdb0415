"""``seqlrp explain-text --hf-model DIR``: a saved tiny Hugging Face classifier and its tokenizer; the report's words
are the library's (``seqlrp.explain_text`` of each sentence alone), special tokens grey, --compare, the id2label
names, truncation, and every bad combination of options refused with one line."""

from __future__ import annotations

import html5lib
import pytest
import torch

import seqlrp
from seqlrp.cli import main
from seqlrp.transformers import CPLRP, AttnLRP, explain_transformer
from seqlrp.viz.numbers import number

from ..transformers.tiny import save_tiny

transformers = pytest.importorskip("transformers")

SENTENCES = ["a wonderful movie, unforgettable!", "bad", "the plot drags but the actors shine", "great",
             "not good", "very bad"]  # (two pairs of one token count: batched together)
LABELS = [1, 0, 2, 1, 0, 0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    save_tiny(root / "bert", "bert")
    save_tiny(root / "llama", "llama")
    save_tiny(root / "named", "bert")
    named = transformers.AutoConfig.from_pretrained(root / "named")
    named.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    named.label2id = {v: k for k, v in named.id2label.items()}
    named.save_pretrained(root / "named")
    (root / "input.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in
                                                                zip(SENTENCES, LABELS, strict=True)), encoding="utf-8")
    return root


def load(folder):
    return (transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval(),
            transformers.AutoTokenizer.from_pretrained(folder))


def explain(folders, name, *extra, out="r.html"):
    return main(["explain-text", "--hf-model", str(folders / name), "--input", str(folders / "input.tsv"),
                 "--out", str(folders / out), "--batch-size", "2", *extra])


def dom(path):
    return html5lib.parse(path.read_text(encoding="utf-8"), namespaceHTMLElements=False)


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_report_words_are_the_library_words_of_each_sentence_alone(folders, captured, name):
    assert explain(folders, name, out=f"{name}.html") == 0
    model, tokenizer = load(folders / name)
    assert len(captured) == len(SENTENCES)
    page = dom(folders / f"{name}.html")
    panels = page.findall(".//div[@class='panel']")
    for i, (sentence, (shown, index)) in enumerate(zip(SENTENCES, captured, strict=True)):
        (method, result), = shown.items()
        assert method == "AttnLRP(epsilon=1e-06)"
        alone = seqlrp.explain_text(model, tokenizer([sentence], return_tensors="pt"), composite=AttnLRP(),
                                    tokenizer=tokenizer)
        words, expected = result.words[index], alone.words[0]
        assert [(w.text, w.special) for w in words] == [(w.text, w.special) for w in expected]
        scale = max(abs(w.relevance) for w in expected)
        assert all(abs(a.relevance - b.relevance) <= 1e-9 * scale for a, b in zip(words, expected, strict=True))
        chips = [s for s in panels[i].iter("span") if s.get("class") in ("token", "token special")]
        assert [c.find("span[@class='word']").text for c in chips] == [w.text for w in expected]
        assert [c.find("span[@class='value']").text for c in chips] == [number(w.relevance, signed=True)
                                                                        for w in expected]
        assert [c.get("class") == "token special" for c in chips] == [w.special for w in expected]
    if name == "bert":  # [CLS] and [SEP] grey, and said so
        grey = page.findall(".//span[@class='token special']")
        assert len(grey) == 2 * len(SENTENCES)
        assert all("background:#e4e4e4" in chip.get("style") for chip in grey)
        assert "Grey tokens" in "".join(page.find(".//details[@class='help']").itertext())


def test_compare_runs_the_baselines_on_the_class_lrp_explained(folders, captured):
    assert explain(folders, "bert", "--compare", "--composite", "cplrp", "--epsilon", "1e-9", out="compare.html") == 0
    model, tokenizer = load(folders / "bert")
    methods = [s.text for s in dom(folders / "compare.html").iter("span") if s.get("class") == "method"]
    assert methods == ["CPLRP(epsilon=1e-09)", "gradient × input", "gradient² (sensitivity)"] * len(SENTENCES)
    shown, index = captured[2]
    batch = tokenizer([SENTENCES[2]], return_tensors="pt")
    lrp = explain_transformer(model, batch, composite=CPLRP(epsilon=1e-9))
    assert torch.allclose(shown["CPLRP(epsilon=1e-09)"].relevance[index], lrp.relevance[0], rtol=0,
                          atol=1e-9 * lrp.relevance.abs().max())
    for method, mode in (("gradient × input", "gradient_x_input"), ("gradient² (sensitivity)", "gradient")):
        alone = explain_transformer(model, batch, lrp.target, seed="one", mode=mode)
        assert torch.allclose(shown[method].relevance[index], alone.relevance[0], rtol=0,
                              atol=1e-9 * alone.relevance.abs().max())


def test_class_names_come_from_the_configuration(folders):
    assert explain(folders, "named", out="named.html") == 0
    names = [b.text for b in dom(folders / "named.html").iter("b") if b.get("class") == "class"]
    assert names and all(n.split(" (")[0] in {"negative", "neutral", "positive", "not given"} for n in names)
    assert "negative (0)" in names


def test_a_sentence_longer_than_the_model_reads_is_truncated_with_one_warning(folders, capsys):
    (folders / "long.txt").write_text("good " * 80 + "\nbad\n", encoding="utf-8")
    code = main(["explain-text", "--hf-model", str(folders / "bert"), "--input", str(folders / "long.txt"),
                 "--out", str(folders / "long.html")])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("warning:") == 1 and "1 sentence(s) (e.g. sentence 1) have more tokens than the model reads " \
                                          "(64)" in err
    first = dom(folders / "long.html").findall(".//div[@class='panel']")[0]
    assert len(first.findall(".//span[@class='token']")) == 62  # (64 tokens: [CLS], 62 words, [SEP])


def test_a_folder_without_a_trained_head_is_explained_with_one_warning(folders, capsys):
    base = folders / "base"
    transformers.BertModel(transformers.AutoConfig.from_pretrained(folders / "bert")).save_pretrained(base)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (base / name).write_bytes((folders / "bert" / name).read_bytes())
    capsys.readouterr()  # (save_pretrained's own progress bar)
    code = main(["explain-text", "--hf-model", str(base), "--input", str(folders / "input.tsv"),
                 "--out", str(folders / "base.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1
    assert "holds no weights for 2 parameter(s) of BertForSequenceClassification (e.g. classifier.bias)" in err[0]


def one_error(capsys, *args) -> str:
    """A refused command line: exit 3, one line on stderr (returned)."""
    assert main([str(a) for a in args]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def usage_error(capsys, *args) -> str:
    """An argparse usage error: exit 2; the error line (after the usage) is returned."""
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_combinations_are_one_clear_error(folders, capsys, tmp_path):
    hf = ["explain-text", "--hf-model", folders / "bert", "--input", folders / "input.tsv", "--out", tmp_path]
    message = one_error(capsys, *hf, "--vocab", "v.txt", "--model-class", "m:M", "--lengths", "--bias-factor", "1")
    assert message == ("seqlrp explain-text: error: --hf-model takes the model, its tokenizer and its configuration "
                       "from the folder; --model-class, --vocab, --lengths, --bias-factor are options of --model (an "
                       "LSTM/GRU state_dict): leave them out")
    assert "argument --model: not allowed with argument --hf-model" in usage_error(capsys, *hf, "--model", "m.pt")
    assert "one of the arguments --model --hf-model is required" in usage_error(
        capsys, "explain-text", "--input", folders / "input.tsv")
    lstm = ["explain-text", "--model", "m.pt", "--input", folders / "input.tsv", "--out", tmp_path]
    assert "--composite attnlrp is a preset of --hf-model" in one_error(capsys, *lstm, "--composite", "attnlrp")
    assert one_error(capsys, *lstm).endswith("--model needs --vocab (one token per line; the line number is the id)")
    folder = ["explain-text", "--input", folders / "input.tsv", "--out", tmp_path, "--hf-model"]
    assert "--hf-model folder not found" in one_error(capsys, *folder, tmp_path / "missing")
    assert "is a file; pass the folder" in one_error(capsys, *folder, folders / "input.tsv")
    assert "has no config.json" in one_error(capsys, *folder, tmp_path)
    (tmp_path / "config.json").write_bytes((folders / "bert" / "config.json").read_bytes())
    assert "holds no tokenizer" in one_error(capsys, *folder, tmp_path)
    assert "--batch-size must be a positive integer" in one_error(capsys, *hf, "--batch-size", "0")
