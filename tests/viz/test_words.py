"""A Hugging Face explanation in the report and in the notebook: words (pieces merged) coloured by relevance, special
tokens grey but listed and counted, the position / token-type embedding shares beside Δ."""

from __future__ import annotations

import html5lib
import matplotlib
import numpy as np
import pytest

from seqlrp.transformers import CPLRP, explain_transformer
from seqlrp.viz import Report, show, token_html
from seqlrp.viz.numbers import number

from ..transformers.tiny import tiny, tiny_tokenizer

matplotlib.use("Agg")
pytest.importorskip("transformers")

SENTENCES = ["a wonderful movie, unforgettable!", "bad film"]


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    tokenizer = tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    return explain_transformer(tiny("bert"), batch, target=1, composite=CPLRP(epsilon=1e-9), tokenizer=tokenizer)


def parse(html: str):
    return html5lib.parse(html, namespaceHTMLElements=False)


def chips(element) -> list:
    return [s for s in element.iter("span") if (s.get("class") or "").split()[:1] == ["token"]]


def test_the_report_shows_words_grey_special_tokens_and_the_embedding_shares(explained):
    report = Report("words", labels=["a", "b", "c"])
    report.section("sentences")
    for i in range(len(SENTENCES)):
        report.add_text(explained, i, true_label=1, method="CP-LRP")
    page = parse(report.render())
    panels = page.findall(".//div[@class='panel']")
    assert len(panels) == 2
    for i, panel in enumerate(panels):
        words = explained.words[i]
        shown = chips(panel)
        assert [c.find("span[@class='word']").text for c in shown] == [w.text for w in words]
        assert [c.find("span[@class='value']").text for c in shown] == [number(w.relevance, signed=True)
                                                                        for w in words]
        assert [c.get("class") == "token special" for c in shown] == [w.special for w in words]
        assert [w.text for w in words if w.special] == ["[CLS]", "[SEP]"]
        for chip, word in zip(shown, words, strict=True):
            assert ("background:#e4e4e4" in chip.get("style")) == word.special
            assert chip.get("title").startswith("special token (not coloured)") == word.special
        # the scale is that of the words (the special tokens are not coloured, so they do not set it)
        vmax = float(panel.find(".//div[@class='scale']").get("data-vmax"))
        assert vmax == pytest.approx(max(abs(w.relevance) for w in words if not w.special), rel=1e-2)
        assert "of the words: special tokens are grey" in "".join(panel.find(".//div[@class='scale']").itertext())
        # the shares of the position / token-type tables, and Δ counting them with the special tokens
        line = panel.find(".//div[@class='meta embeddings']")
        shares = {e.find("code").text: e for e in line.findall("span[@class='embedding']")}
        assert set(shares) == {"bert.embeddings.position_embeddings", "bert.embeddings.token_type_embeddings"}
        for name, element in shares.items():
            assert "".join(element.itertext()) == f"{name} = {number(float(explained.embedding_shares[name][i].sum()))}"
        meta = "".join(panel.find(".//div[@class='meta']").itertext())
        total = float(explained.relevance[i].sum())
        assert f"Σ relevance = {number(total)}" in meta
        delta = total + sum(float(s[i].sum()) for s in explained.embedding_shares.values()) \
            - float(explained.seed[i].sum())
        assert f"conservation Δ = {number(delta)}" in meta
    help_text = "".join(page.find(".//details[@class='help']").itertext())
    assert "Grey tokens" in help_text and "position / token-type embeddings" in help_text


def test_shared_scale_and_other_texts(explained):
    report = Report("words", scale="shared")
    report.add_text(explained, 0, tokens=[w.text.upper() for w in explained.words[0]])
    report.add_text(explained, 1)
    page = parse(report.render())
    assert chips(page)[1].find("span[@class='word']").text == "A"
    vmax = [float(s.get("data-vmax")) for s in page.findall(".//div[@class='scale']")]
    largest = max(abs(w.relevance) for words in explained.words for w in words if not w.special)
    assert vmax == [pytest.approx(largest, rel=1e-2)] * 2
    with pytest.raises(ValueError, match=r"example 0 has 8 words \(special tokens included\) but 2 tokens were given"):
        Report().add_text(explained, 0, tokens=["a", "b"])


def test_a_batch_without_word_ids_is_shown_token_by_token(explained):
    model = tiny("bert")
    ids = explained.attention_mask.new_tensor([[2, 7, 9, 3, 0]])
    plain = explain_transformer(model, {"input_ids": ids, "attention_mask": (ids > 0).long()}, target=0)
    assert plain.words is None and plain.tokens is None
    report = Report()
    report.add_text(plain, 0)
    assert [c.find("span[@class='word']").text for c in chips(parse(report.render()))] == ["0", "1", "2", "3"]


def test_token_html_marks_special_tokens_and_checks_their_count():
    html = str(token_html(["[CLS]", "good", "[SEP]"], [5.0, 0.5, -0.1], special=[True, False, False]))
    found = chips(parse(html))
    assert [c.get("class") for c in found] == ["token special", "token", "token"]
    assert "background:#ff0000" in found[1].get("style")  # (full colour: 0.5 is the largest |R| of the words)
    with pytest.raises(ValueError, match="3 tokens but 2 special flags"):
        token_html(["a", "b", "c"], [1, 2, 3], special=[True, False])


def test_the_notebook_view_shows_words(explained):
    html = explained._repr_html_()
    page = parse(html)
    assert "TransformerExplanation: word relevance of 2 example(s)" in html
    shown = chips(page)
    assert [c.find("span[@class='word']").text for c in shown] == [w.text for words in explained.words for w in words]
    assert sum(c.get("class") == "token special" for c in shown) == 4
    assert html.count("bert.embeddings.position_embeddings") == 2
    figure = show(explained, 1)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels == [w.text for w in explained.words[1]]
    heights = np.array([p.get_height() for p in figure.axes[0].patches])
    assert np.allclose(heights, [w.relevance for w in explained.words[1]])
