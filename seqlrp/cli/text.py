"""``seqlrp explain-text``: token relevance of a saved text classifier (an LSTM/GRU state_dict, or a Hugging Face
model folder: word relevance), as an HTML report."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    CliError,
    Formatter,
    build,
    check_label_count,
    import_class,
    input_file,
    is_torchscript,
    load_weights,
    model_kwargs,
    parse_target,
    positive_int,
    read_labels,
    read_text,
    report_path,
)
from .hf import COMPOSITES

if TYPE_CHECKING:
    import torch

EPILOG = """examples:
  seqlrp explain-text --model model.pt --model-class mymodels:BiLSTM --model-arg vocab_size=14756 \\
      --vocab vocab.txt --input sentences.txt --out out/
  seqlrp explain-text --model model.pt --model-class seqlrp.lstm:BiLSTMClassifier --model-arg vocab_size=6 \\
      --model-arg embedding_dim=4 --model-arg hidden_size=3 --model-arg num_classes=2 --lengths \\
      --vocab vocab.txt --input test.tsv --target 1 --labels classes.txt --compare --out report.html
  seqlrp explain-text --hf-model my-finetuned-bert/ --input reviews.tsv --out out/
  seqlrp explain-text --hf-model my-finetuned-bert/ --composite cplrp --input reviews.txt --compare --out r.html

--hf-model DIR: a Hugging Face sequence classifier and its tokenizer, saved in one folder (model.save_pretrained(DIR),
tokenizer.save_pretrained(DIR)); sentences are read as written (not split on whitespace), tokenized, and shown word
by word (word pieces merged, special tokens grey)."""


def add_parser(sub) -> None:
    text = sub.add_parser("explain-text", help="token relevance of a saved text classifier (HTML report)",
                          description="Explain a text classifier sentence by sentence and write a self-contained HTML "
                          "report: an LSTM/GRU classifier (nn.Embedding -> LSTM/GRU -> Linear, a state_dict) with "
                          "LSTM-LRP, or a Hugging Face classifier (--hf-model DIR) with AttnLRP / CP-LRP.",
                          epilog=EPILOG, formatter_class=Formatter)
    which = text.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a state_dict file (torch.save(model.state_dict(), FILE)) of an LSTM/GRU "
                                       "classifier (with --model-class and --vocab)")
    which.add_argument("--hf-model", metavar="DIR", help="a Hugging Face model folder with its tokenizer "
                       "(model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)); loaded with "
                       "AutoModelForSequenceClassification and AutoTokenizer")
    text.add_argument("--model-class", help="the model's class: importable module:Class or path/file.py:Class "
                                            "(the current folder is importable)")
    text.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                      help="keyword argument of the class, a Python literal or a string (repeatable)")
    text.add_argument("--vocab", help="--model: UTF-8 file, one token per line; the line number is the id")
    text.add_argument("--input", required=True, help="UTF-8 .tsv (sentence<TAB>label, optional header) or "
                                                     ".txt (one sentence per line); --model: tokens split on "
                                                     "whitespace; --hf-model: the folder's tokenizer")
    text.add_argument("--target", help="class index to explain (default: the predicted class)")
    text.add_argument("--composite", choices=COMPOSITES, help="--hf-model: the preset, AttnLRP or CP-LRP for "
                      "transformers, RecurrentLRP or MambaLRP for the recurrent families (default: attnlrp, or "
                      "recurrentlrp for Mamba, Mamba2, RecurrentGemma, RWKV, xLSTM)")
    text.add_argument("--epsilon", type=float, help="ε of the rules (default: 1e-3 for --model's LSTM-LRP, 1e-6 for "
                                                    "--hf-model's presets)")
    text.add_argument("--bias-factor", type=float, default=0.0, help="Arras's bias share, 0 to 1 (1 conserves)")
    text.add_argument("--lengths", action="store_true", help="call model(token_ids, lengths) instead of "
                                                             "model(token_ids)")
    text.add_argument("--unk", default="<unk>", help="the vocabulary's unknown-word token")
    text.add_argument("--labels", metavar="FILE", help="class names, one per line in class-index order "
                      "(default: classes shown as indices)")
    text.add_argument("--compare", action="store_true",
                      help="show LRP, gradient × input and gradient side by side for every sentence")
    text.add_argument("--batch-size", type=int, default=32, help="sentences per explained batch (a batch holds "
                                                                 "sentences of one length: no padding)")
    text.add_argument("--out", default="report.html", help="a folder (report.html inside) or a .html file path")
    text.set_defaults(func=run)


def load_text_model(args) -> torch.nn.Module:
    path = input_file(args.model, "model file")
    if args.model_class is None:
        if is_torchscript(path):
            raise CliError(f"{path} is a TorchScript model: its compiled graph hides the layers LRP attaches rules to, "
                           "so it cannot be explained; save model.state_dict() and pass --model-class module:Class")
        raise CliError(f"{path}: pass --model-class module:Class (and --model-arg key=value) to load a state_dict")
    model = build(import_class(args.model_class), model_kwargs(args.model_arg))
    return load_weights(model, path, "model file", args.model_class)


UNKNOWN_MARK = "⟨unk⟩"  # (after a word that was not in the vocabulary)
#: ``--epsilon`` of ``--model``'s LSTM-LRP rules when not given (``--hf-model``'s presets: :data:`.hf.DEFAULT_EPSILON`)
LSTM_EPSILON = 1e-3


def lstm_rules(epsilon: float, bias_factor: float):
    """The LSTM-LRP rules of ``--epsilon`` / ``--bias-factor`` as a text composite (``seqlrp.lstm.ArrasLSTM``)."""
    from ..lstm import ArrasLSTM

    return ArrasLSTM(epsilon=epsilon, bias_factor=bias_factor)


def read_vocabulary(path: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for number, token in enumerate(read_text(path, "vocabulary file").split("\n")):
        token = token.rstrip("\r")
        if token == "":
            continue
        if token in index:
            raise CliError(f"vocabulary file {path}: token {token!r} appears twice (lines {index[token] + 1} and "
                           f"{number + 1}); each line must hold a distinct token")
        index[token] = number
    if not index:
        raise CliError(f"vocabulary file {path} holds no tokens")
    return index


def read_lines(path: str) -> tuple[list[str], list[int | None]]:
    """The sentences of ``--input`` as written (.tsv: before the tab, a header row ``sentence<TAB>...`` skipped;
    blank lines skipped) and their integer labels (None where there is none)."""
    p = Path(path)
    sentences, labels = [], []
    for number, line in enumerate(read_text(p, "input file").splitlines()):
        if not line.strip() or (number == 0 and line.lower().startswith("sentence\t")):
            continue
        text, _, label = line.partition("\t") if p.suffix == ".tsv" else (line, "", "")
        if not text.strip():
            continue
        sentences.append(text)
        labels.append(int(label) if label.strip().lstrip("-").isdigit() else None)
    if not sentences:
        raise CliError(f"no sentences in {p}")
    return sentences, labels


def read_sentences(path: str) -> tuple[list[list[str]], list[int | None]]:
    """:func:`read_lines`, each sentence split on whitespace."""
    sentences, labels = read_lines(path)
    return [sentence.split() for sentence in sentences], labels


def token_ids(sentences: list[list[str]], index: dict[str, int], unk: str) -> list[list[int]]:
    unknown = index.get(unk)
    rows = []
    for row, sentence in enumerate(sentences):
        for word in sentence:
            if word not in index and unknown is None:
                raise CliError(f"word {word!r} (sentence {row + 1}) is not in the vocabulary and there is no {unk!r} "
                               "token (pass --unk)")
        rows.append([index.get(word, unknown) for word in sentence])
    return rows


def run(args) -> Path:
    positive_int(args.batch_size, "--batch-size")
    if args.hf_model is not None:
        return run_hf(args)
    if args.composite is not None:
        raise CliError(f"--composite {args.composite} is a preset of --hf-model (a Hugging Face model); --model's "
                       "LSTM-LRP rules are set with --epsilon and --bias-factor")
    if args.vocab is None:
        raise CliError("--model needs --vocab (one token per line; the line number is the id)")
    args.epsilon = LSTM_EPSILON if args.epsilon is None else args.epsilon
    return run_lstm(args)


def run_lstm(args) -> Path:
    import torch

    from ..lstm import explain_text
    from ..lstm.text import text_gradient, text_gradient_x_input
    from ..viz import Report

    out = report_path(args.out)
    target = parse_target(args.target)
    labels = read_labels(args.labels)
    model = load_text_model(args)
    sentences, true_labels = read_sentences(args.input)
    vocabulary = read_vocabulary(args.vocab)
    ids = token_ids(sentences, vocabulary, args.unk)
    unknown = sum(word not in vocabulary for sentence in sentences for word in sentence)
    shown = [[f"{word}{UNKNOWN_MARK}" if word not in vocabulary else word for word in sentence]
             for sentence in sentences]
    # one batch per sentence length: no padding, so no line's explanation depends on the other lines
    by_length: dict[int, list[int]] = defaultdict(list)
    for row, sentence in enumerate(ids):
        by_length[len(sentence)].append(row)
    results: dict[int, tuple] = {}
    chunks = [(length, rows[i:i + args.batch_size]) for length, rows in sorted(by_length.items())
              for i in range(0, len(rows), args.batch_size)]
    for length, rows in chunks:
        batch = torch.tensor([ids[r] for r in rows], dtype=torch.long)
        lengths = torch.full((len(rows),), length, dtype=torch.long) if args.lengths else None
        result = explain_text(model, batch, target, lstm_rules(args.epsilon, args.bias_factor), lengths=lengths,
                              tokens=[shown[r] for r in rows])
        check_label_count(labels, result.output.shape[1], args.labels)
        if args.compare:  # the baselines explain the class LRP explained
            result = {f"LRP ε={args.epsilon}": result,
                      "gradient × input": text_gradient_x_input(model, batch, result.target, lengths=lengths),
                      "gradient² (sensitivity)": text_gradient(model, batch, result.target, lengths=lengths)}
        results.update({r: (result, j) for j, r in enumerate(rows)})
    report = Report(f"seqlrp: {Path(args.model).name}", f"{len(sentences)} sentences from {args.input}"
                    + ("" if labels else "; classes as indices (pass --labels FILE for names)")
                    + (f"; {unknown} word(s) not in the vocabulary, explained as {args.unk} (marked {UNKNOWN_MARK})"
                       if unknown else ""), labels=labels)
    report.section("Token relevance")
    for i, sentence in enumerate(shown):
        result, j = results[i]
        if args.compare:
            report.add_comparison(result, j, sentence, true_label=true_labels[i], title=f"sentence {i + 1}")
        else:
            report.add_text(result, j, sentence, true_label=true_labels[i], method=f"LRP ε={args.epsilon}",
                            title=f"sentence {i + 1}")
    return report.save(out)


def run_hf(args) -> Path:
    """``--hf-model DIR``: word relevance of a Hugging Face classifier, every sentence explained as if alone."""
    import warnings

    from ..transformers import explain_transformer
    from ..transformers.batching import batch_size_for, explain_texts, plan, token_limit
    from ..viz import Report
    from .hf import check_hf_flags, load_hf, transformer_composite

    check_hf_flags(args)
    out = report_path(args.out)
    target = parse_target(args.target)
    labels = read_labels(args.labels)
    sentences, true_labels = read_lines(args.input)
    model, tokenizer, names = load_hf(args.hf_model)
    composite = transformer_composite(args.composite, args.epsilon, model)
    labels = labels or names
    schedule = plan(tokenizer, sentences, batch_size_for(model, args.batch_size), token_limit(model, tokenizer))
    if schedule.truncated:
        warnings.warn(f"{len(schedule.truncated)} sentence(s) (e.g. sentence {schedule.truncated[0] + 1}) have more "
                      f"tokens than the model reads ({schedule.limit}); only their first {schedule.limit} tokens were "
                      "explained", UserWarning, stacklevel=1)
    method = repr(composite)
    results: dict[int, tuple] = {}
    for rows, batch, result in explain_texts(model, tokenizer, sentences, target, composite, schedule=schedule):
        if args.labels:
            check_label_count(labels, result.output.shape[1], args.labels)
        if args.compare:  # the baselines explain the class LRP explained
            result = {method: result, **{name: explain_transformer(model, batch, result.target, tokenizer=tokenizer,
                                                                   seed="one", mode=mode)
                                         for name, mode in (("gradient × input", "gradient_x_input"),
                                                            ("gradient² (sensitivity)", "gradient"))}}
        results.update({r: (result, j) for j, r in enumerate(rows)})
    report = Report(f"seqlrp: {Path(args.hf_model).name}", f"{len(sentences)} sentences from {args.input}"
                    + ("" if labels else "; classes as indices (pass --labels FILE for names)")
                    + (f"; {len(schedule.truncated)} sentence(s) truncated to {schedule.limit} tokens"
                       if schedule.truncated else ""), labels=labels)
    report.section("Word relevance", "Word pieces are merged into words (their relevance summed); special tokens "
                   "are grey.")
    for i in range(len(sentences)):
        result, j = results[i]
        if args.compare:
            report.add_comparison(result, j, true_label=true_labels[i], title=f"sentence {i + 1}")
        else:
            report.add_text(result, j, true_label=true_labels[i], method=method, title=f"sentence {i + 1}")
    return report.save(out)
