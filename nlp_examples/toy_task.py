"""The toy task of Arras et al. 2019 ("Evaluating Recurrent Neural Network Explanations").

Sequences of random digits 0-9; exactly two positions are MARKED (the marked digit d is the token
10 + d). The label depends only on the marked digits: 1 if their sum is >= 9, else 0. An LSTM and a
BiLSTM are trained, and two classifiers beyond "last state -> Linear" (a BiLSTM with attention pooling
and Kim's CNN, seqlrp.lstm); every test sequence is explained, and we report how often the two tokens
with the largest |relevance| are exactly the two marked ones, for LRP (signal-takes-all, ε, bias_factor
0 and 1), gradient (sensitivity), gradient x input, and random relevance.

    python nlp_examples/toy_task.py [--quick] [--out out/toy]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqlrp
from seqlrp.viz import Report


class Classifier(nn.Module):
    """Embedding -> (Bi)LSTM (packed) -> last states -> Linear."""

    def __init__(self, bidirectional: bool, hidden: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, hidden, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), 2)
        self.directions = 2 if bidirectional else 1

    def forward(self, ids, lengths):
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.out(torch.cat([h[-i] for i in range(self.directions, 0, -1)], -1))


PAD = 20  # the padding id (its own row: Kim's CNN reads the windows that overlap the padding)
VOCAB = 21


def make_data(n: int, generator: torch.Generator):
    lengths = torch.randint(6, 13, (n,), generator=generator)
    digits = torch.randint(0, 10, (n, 12), generator=generator)
    marks = torch.stack([torch.randperm(int(length), generator=generator)[:2] for length in lengths])
    ids = digits.clone()
    rows = torch.arange(n)[:, None]
    ids[rows, marks] += 10
    ids = ids.masked_fill(torch.arange(12)[None, :] >= lengths[:, None], PAD)
    labels = (digits[rows, marks].sum(1) >= 9).long()
    return ids, lengths, labels, marks


def train(model, ids, lengths, labels, epochs, generator):
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(ids), generator=generator)
        for start in range(0, len(ids), 128):
            idx = order[start:start + 128]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(ids[idx], lengths[idx]), labels[idx]).backward()
            optimizer.step()
    return model.eval()


EXPLAINERS = {
    "LRP ε=0.001 bf=0": lambda m, ids, t, lengths: seqlrp.explain_text(m, ids, t, lengths=lengths),
    "LRP ε=0.001 bf=1": lambda m, ids, t, lengths: seqlrp.explain_text(
        m, ids, t, seqlrp.lstm.ArrasLSTM(bias_factor=1.0), lengths=lengths),
    "gradient": lambda m, ids, t, lengths: seqlrp.baselines.text_gradient(m, ids, t, lengths=lengths),
    "gradient x input": lambda m, ids, t, lengths: seqlrp.baselines.text_gradient_x_input(m, ids, t, lengths=lengths),
}


def top2_hit(relevance: torch.Tensor, lengths, marks) -> float:
    scores = relevance.abs().masked_fill(torch.arange(relevance.shape[1])[None, :] >= lengths[:, None], -1.0)
    top = scores.topk(2, 1).indices.sort(1).values
    return float((top == marks.sort(1).values).all(1).double().mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, few epochs (CI)")
    parser.add_argument("--out", default="out/toy_task")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    n_train, n_test, epochs = (2000, 200, 4) if args.quick else (20000, 2000, 12)
    ids, lengths, labels, _ = make_data(n_train, generator)
    test_ids, test_lengths, test_labels, test_marks = make_data(n_test, generator)
    report = Report("Toy task (Arras et al. 2019)", "two marked digits decide the label: sum >= 9")
    results = {}
    start = time.perf_counter()
    models = {"LSTM": lambda: Classifier(False), "BiLSTM": lambda: Classifier(True),
              "attention BiLSTM": lambda: seqlrp.lstm.AttentionRNNClassifier(VOCAB, 16, 32, 2, padding_idx=PAD),
              "Kim CNN": lambda: seqlrp.lstm.KimCNN(VOCAB, 16, 2, filters=64, padding_idx=PAD)}
    for name, build in models.items():
        model = train(build(), ids, lengths, labels, epochs, generator)
        with torch.no_grad():
            accuracy = float((model(test_ids, test_lengths).argmax(1) == test_labels).double().mean())
        rows = []
        for method, explain in EXPLAINERS.items():
            relevance = explain(model, test_ids, test_labels, test_lengths).token_relevance
            rows.append([method, top2_hit(relevance, test_lengths, test_marks)])
        noise = torch.rand(test_ids.shape, generator=generator)
        rows.append(["random", top2_hit(noise, test_lengths, test_marks)])
        results[name] = {"accuracy": accuracy, "top2": dict(rows)}
        report.add_table(["method", "both marked tokens = top-2 |relevance|"], rows,
                         title=f"{name}: test accuracy {accuracy:.3f} on {n_test} sequences")
    path = report.save(Path(args.out) / "report.html")
    print(f"toy task ({'quick' if args.quick else 'full'}: {n_train} train / {n_test} test sequences, "
          f"{time.perf_counter() - start:.0f} s)")
    for name, result in results.items():
        print(f"{name}: accuracy {result['accuracy']:.3f}")
        for method, hit in result["top2"].items():
            print(f"  {method:20s} top-2 = marked: {hit:.3f}")
    print(f"report: {path}")
    return results


if __name__ == "__main__":
    main()
