"""A BiLSTM sentiment classifier on SST-2, explained with LRP and baselines, compared by token deletion.

Reads ``train.tsv`` and ``test.tsv`` (``sentence<TAB>label``, header line) from ``--data``, trains a
BiLSTM with trained embeddings (seqlrp.lstm.BiLSTMClassifier, e = d = 60), reports test accuracy,
explains the test sentences (target = the predicted class) and computes token-deletion curves
(MoRF, LeRF; tokens removed, or replaced by <unk> or <pad>) with AOPC for LRP (ε, bias_factor 0 and
1), gradient x input, sensitivity and random relevance. Writes report.html, model.pt (state_dict)
and vocab.txt, which ``seqlrp explain-text`` reuses:

    python nlp_examples/sst2_bilstm.py --data ../shared/data/sst2 [--quick] [--out out/sst2]
    seqlrp explain-text --model out/sst2/model.pt --model-class seqlrp.lstm:BiLSTMClassifier \\
        --model-arg vocab_size=N --model-arg embedding_dim=60 --model-arg hidden_size=60 \\
        --model-arg num_classes=2 --vocab out/sst2/vocab.txt --input FILE.tsv --lengths
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import torch
from torch import nn

import seqlrp
from seqlrp.demo import encode
from seqlrp.evaluate import compare_text, format_table, token_perturbation
from seqlrp.lstm import BiLSTMClassifier
from seqlrp.viz import Report, perturbation_figure


def read(path: Path, limit: int | None = None):
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    pairs = [(s.split(), int(label)) for s, _, label in (line.rpartition("\t") for line in lines) if s.strip()]
    return pairs[:limit] if limit else pairs


def train(model: nn.Module, ids, lengths, labels, epochs: int, generator: torch.Generator, lr: float = 2e-3) -> None:
    """Adam on shuffled batches of 64, each cut to its longest phrase; leaves the model in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(ids), generator=generator)
        for begin in range(0, len(ids), 64):
            idx = order[begin:begin + 64]
            longest = int(lengths[idx].max())
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(ids[idx, :longest], lengths[idx]), labels[idx]).backward()
            optimizer.step()
    model.eval()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--quick", action="store_true", help="12,000 training phrases, 2 epochs, 100 test sentences")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="out/sst2_bilstm")
    args = parser.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    train_pairs = read(data / "train.tsv", 12000 if args.quick else None)
    test_pairs = read(data / "test.tsv", 100 if args.quick else None)
    counts = Counter(w for words, _ in train_pairs for w in words)
    vocab_list = ["<pad>", "<unk>"] + sorted(counts)
    vocab = {w: i for i, w in enumerate(vocab_list)}
    ids, lengths, labels = encode(train_pairs, vocab)
    test_ids, test_lengths, test_labels = encode(test_pairs, vocab)
    model = BiLSTMClassifier(len(vocab_list), 60, 60, 2, padding_idx=0)
    epochs = 2 if args.quick else args.epochs
    train(model, ids, lengths, labels, epochs, generator)
    with torch.no_grad():
        predicted = model(test_ids, test_lengths).argmax(1)
    accuracy = float((predicted == test_labels).double().mean())
    torch.save(model.state_dict(), out / "model.pt")
    (out / "vocab.txt").write_text("\n".join(vocab_list) + "\n", encoding="utf-8")

    result = seqlrp.explain_text(model, test_ids, predicted, lengths=test_lengths)
    relevance = {  # each method explains once; every comparison below reuses it
        "LRP ε=0.001 bf=0": result.token_relevance,
        "LRP ε=0.001 bf=1": seqlrp.explain_text(model, test_ids, predicted, seqlrp.lstm.ArrasLSTM(bias_factor=1.0),
                                                lengths=test_lengths).token_relevance,
        "gradient x input": seqlrp.baselines.text_gradient_x_input(model, test_ids, predicted,
                                                                   lengths=test_lengths).token_relevance,
        "sensitivity (gradient²)": seqlrp.baselines.text_gradient(model, test_ids, predicted,
                                                                  lengths=test_lengths).token_relevance,
        "random": torch.rand(test_ids.shape, generator=torch.Generator().manual_seed(1)),
    }
    steps = 5
    replacements = {"remove": "remove", "<unk>": vocab["<unk>"], "<pad>": vocab["<pad>"]}
    rows = {name: compare_text(model, test_ids, predicted, relevance, lengths=test_lengths, orders=("morf", "lerf"),
                               steps=steps, replacement=replacement, score="logit")
            for name, replacement in replacements.items()}
    print(f"SST-2 BiLSTM ({'quick' if args.quick else 'full'}): {len(train_pairs)} training phrases, {epochs} "
          f"epoch(s), vocabulary {len(vocab_list)}; test accuracy {accuracy:.3f} on {len(test_pairs)} sentences "
          f"({time.perf_counter() - start:.0f} s)")
    report = Report("SST-2 BiLSTM", f"test accuracy {accuracy:.3f}")
    for name, table in rows.items():
        what = "removed" if name == "remove" else f"replaced by {name} (id {replacements[name]})"
        print(f"up to {steps} tokens {what}, logit of the predicted class:")
        print(format_table(table))
        report.add_table(list(table[0]), [list(r.values()) for r in table],
                         title=f"token deletion AOPC, replacement = {name} (higher MoRF, lower LeRF = better)")
    curves = {name: token_perturbation(model, test_ids, r, predicted, lengths=test_lengths, steps=steps)
              for name, r in relevance.items()}
    report.add_figure(perturbation_figure(curves, "MoRF token deletion", "tokens removed"), "MoRF curves")
    report.section("Test sentences (LRP)")
    for i in range(min(50, len(test_pairs))):
        report.add_text(result, i, test_pairs[i][0], true_label=int(test_labels[i]),
                        class_names=["negative", "positive"], method="LRP ε=0.001")
    path = report.save(out / "report.html")
    print(f"report: {path}; model: {out / 'model.pt'}; vocabulary: {out / 'vocab.txt'}")
    return {"accuracy": accuracy, "rows": rows}


if __name__ == "__main__":
    main()
