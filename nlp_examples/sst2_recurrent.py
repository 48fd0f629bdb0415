"""An xLSTM (or Mamba, ...) sentiment classifier on SST-2, explained with LRP and baselines, compared by token deletion.

Trains a small model of one recurrent family from scratch (``toy_task_recurrent.TokenClassifier``: word-level
embedding -> 2-layer Hugging Face backbone -> linear head on the mean of the real tokens' states, or on the last
real token with ``--pooling last``) on SST-2 training phrases (Adam, ``--lr``, batches of 64), reports the accuracy
on the sentences of ``test.tsv`` (GLUE's SST-2 validation set, 872 sentences), explains the first ``--test`` of them
(target = the predicted class) with LRP (``seqlrp.recurrent.RecurrentLRP``, both rules for the product of two
signals), gradient x input, sensitivity and random relevance, and reports token-deletion AOPC (MoRF, LeRF and their
gap; tokens removed or replaced by <unk>) with 95% confidence intervals. Writes ``results.json`` and ``table.md``.

    python nlp_examples/sst2_recurrent.py --data ../shared/data/sst2 [--family xlstm] [--quick] [--out out/sst2_rec]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import seqlrp
from seqlrp.evaluate import compare_text, format_table

HERE = Path(__file__).resolve().parent


def _load(name: str):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--family", default="xlstm")
    parser.add_argument("--quick", action="store_true", help="6,000 training phrases, 1 epoch, 60 test sentences")
    parser.add_argument("--train", type=int, default=20000, help="training phrases")
    parser.add_argument("--test", type=int, default=300, help="test sentences explained")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=64, help="embedding and hidden size")
    parser.add_argument("--pooling", choices=("mean", "last"), default="mean")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--out", default="out/sst2_recurrent")
    args = parser.parse_args(argv)
    sst2, toy = _load("sst2_bilstm"), _load("toy_task_recurrent")
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    n_train, n_test, epochs = (6000, 60, 1) if args.quick else (args.train, args.test, args.epochs)
    train_pairs, all_test = sst2.read(data / "train.tsv", n_train), sst2.read(data / "test.tsv")
    counts = Counter(w for words, _ in train_pairs for w in words)
    vocab_list = ["<pad>", "<unk>"] + sorted(counts)
    vocab = {w: i for i, w in enumerate(vocab_list)}
    ids, lengths, labels = sst2.encode(train_pairs, vocab)
    all_ids, all_lengths, all_labels = sst2.encode(all_test, vocab)
    model = toy.TokenClassifier(args.family, len(vocab_list), hidden=args.hidden, pooling=args.pooling)
    sst2.train(model, ids, lengths, labels, epochs, generator, lr=args.lr)
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = float((model(all_ids, all_lengths).argmax(1) == all_labels).double().mean())
    test_pairs = all_test[:n_test]
    test_lengths = all_lengths[:n_test]
    test_ids = all_ids[:n_test, :int(test_lengths.max())]
    with torch.no_grad():
        predicted = model(test_ids, test_lengths).argmax(1)
    composites = {"LRP (signal-takes-all)": seqlrp.recurrent.RecurrentLRP(epsilon=1e-6),
                  "LRP (half rule)": seqlrp.recurrent.RecurrentLRP(epsilon=1e-6, output_gate="half_product")}
    relevance = {name: toy.token_scores(model, test_ids, test_lengths, predicted, "lrp", c)
                 for name, c in composites.items()}
    relevance["gradient x input"] = toy.token_scores(model, test_ids, test_lengths, predicted, "gradient x input")
    relevance["sensitivity (gradient²)"] = toy.token_scores(model, test_ids, test_lengths, predicted, "gradient")
    relevance["random"] = torch.rand(test_ids.shape, generator=torch.Generator().manual_seed(1))
    steps = 5
    replacements = {"remove": "remove", "<unk>": vocab["<unk>"]}
    rows = {name: compare_text(model, test_ids, predicted, relevance, lengths=test_lengths, orders=("morf", "lerf"),
                               steps=steps, replacement=replacement, score="logit")
            for name, replacement in replacements.items()}
    lines = [f"SST-2 {args.family} ({'quick' if args.quick else 'full'}): {len(train_pairs)} training phrases, "
             f"{epochs} epoch(s), hidden {args.hidden}, {args.pooling} pooling, lr {args.lr:g}, vocabulary "
             f"{len(vocab_list)}; accuracy {accuracy:.3f} on the {len(all_test)} sentences of test.tsv (training "
             f"{train_seconds:.0f} s); {len(test_pairs)} sentences explained ({time.perf_counter() - start:.0f} s)"]
    for name, table in rows.items():
        what = "removed" if name == "remove" else f"replaced by {name} (id {replacements[name]})"
        lines.append(f"up to {steps} tokens {what}, logit of the predicted class (AOPC: higher MoRF, lower LeRF = "
                     f"better):")
        lines.append(format_table(table))
    print("\n".join(lines))
    result = {"accuracy": accuracy, "rows": rows, "train": len(train_pairs), "epochs": epochs,
              "explained": len(test_pairs), "seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
