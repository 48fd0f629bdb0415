"""``explain_dataset``'s ``parameter_relevance`` column (issue 25 item 4): the relevance that reached a learned
token concatenated to the input, per row, equal to :func:`seqlrp.explain` on the same rows; with a conserving
composite, Σ input + Σ parameters is the explained logit. A model without such a parameter gets empty maps."""

from __future__ import annotations

import json
import warnings

import html5lib
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import seqlrp
from tests.core.helpers import untouched

CONSERVING = seqlrp.EpsilonEverywhere(epsilon=1e-9, bias_factor=1.0)


class TokenImageModel(nn.Module):
    """Pixels as 16 tokens of 3 channels, a learned class token concatenated in front (as torchvision's ViT)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.class_token = nn.Parameter(torch.randn(1, 1, 3))
        self.mix = nn.Linear(3, 4)
        self.head = nn.Linear(17 * 4, 3)

    def forward(self, x):
        tokens = x.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(torch.relu(self.mix(tokens)).flatten(1))


def explained(model, images, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seqlrp.CoverageWarning)
        return kw.pop("call")(model, images, composite=CONSERVING, **kw)


def test_parquet_parameter_relevance_equals_explain_and_closes_the_balance(tmp_path):
    model = TokenImageModel().double().eval()
    gen = torch.Generator().manual_seed(2)
    images = [(torch.randn(3, 4, 4, dtype=torch.float64, generator=gen), i % 3) for i in range(7)]
    with untouched(model):
        explained(model, images, call=seqlrp.explain_dataset, out=tmp_path / "out", batch_size=3, shard_size=4)
    table = pq.read_table(tmp_path / "out").sort_by("id")
    assert table.schema.field("parameter_relevance").type == seqlrp.dataset.IMAGE_SCHEMA.field(
        "parameter_relevance").type
    alone = explained(model, torch.stack([x for x, _ in images]), call=seqlrp.explain)
    token = alone.parameter_relevance["class_token"]
    assert float(token.abs().min()) > 1e-3  # the token takes a share: the column is not trivially zero
    rows = table.to_pylist()
    frame = table.to_pandas()
    for i, row in enumerate(rows):
        found = {item["name"]: item["relevance"] for item in row["parameter_relevance"]}
        assert list(found) == ["class_token"]
        assert found["class_token"] == pytest.approx(float(token[i]), rel=0, abs=1e-12)
        assert list(frame["parameter_relevance"][i]) == row["parameter_relevance"]  # pandas: the same dicts
        assert row["relevance_sum"] + sum(found.values()) == pytest.approx(row["logit"], rel=0, abs=1e-6)
        assert abs(row["relevance_sum"] - row["logit"]) > 1e-3  # the input alone does not close it
    datasets = pytest.importorskip("datasets")  # (Hugging Face datasets reads no Arrow map: hence a list of structs)
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "part-*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    by_id = dict(zip(loaded["id"], loaded["parameter_relevance"], strict=True))
    assert [by_id[i] for i in range(len(rows))] == table["parameter_relevance"].to_pylist()
    # the dataset report's conservation table counts the parameters: mean |logit − Σ relevance| is ~0
    report = seqlrp.report_dataset(tmp_path / "out", tmp_path / "report.html")
    dom = html5lib.parse(report.read_text(encoding="utf-8"), namespaceHTMLElements=False)
    cells = {"".join(tr[0].itertext()): "".join(tr[1].itertext()) for tr in dom.iter("tr") if len(tr) == 2}
    gap = float(cells["mean |logit − Σ relevance|"].replace("−", "-"))
    assert gap < 1e-6


def test_plain_cnn_rows_have_empty_parameter_maps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    images = [(torch.rand(3, 4, 4), 0) for _ in range(3)]
    table = explained(model, images, call=seqlrp.explain_dataset)
    assert table["parameter_relevance"].to_pylist() == [[], [], []]


def test_a_resumed_output_without_the_column_is_refused_not_mixed(tmp_path):
    """Parts written before ``parameter_relevance`` existed are not resumed into a dataset with it."""
    model = TokenImageModel().double().eval()
    images = [(torch.randn(3, 4, 4, dtype=torch.float64), 0) for _ in range(4)]
    out = tmp_path / "out"
    explained(model, images, call=seqlrp.explain_dataset, out=out, shard_size=2)
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["signature"]["columns"].remove("parameter_relevance")  # (as an older seqlrp wrote it)
    (out / "_manifest.json").write_text(json.dumps(manifest))
    (out / "_SUCCESS").unlink()
    (out / "part-00001.parquet").unlink()
    with pytest.raises(ValueError, match="the output's columns"):
        explained(model, images, call=seqlrp.explain_dataset, out=out, shard_size=2)
    summary = explained(model, images, call=seqlrp.explain_dataset, out=out, shard_size=2, overwrite=True)
    assert summary.complete and pq.read_table(out).num_rows == 4
