"""Throughput of LSTM-LRP: sentences/s for explain_text vs the plain forward, same process.

A bidirectional LSTM of the reference's size (e = d = 60, 5 classes, Arras et al. 2017) with random
weights explains the SST-2 dev sentences from ../shared/data/sst2 (or generated sentences when
absent), in float32 batches of ``--batch`` sentences, either sorted by length (``--order sorted``)
or in the file's order (``--order file``, what a data loader gives). The plain forward (``nn.LSTM``
over packed sequences + the Linear head, no grad) gets the same batches. Also streams N sentences in
batches and reports the peak RSS, to show memory stays bounded.

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/lstm.py [--threads 2] [--batch 64,512,1024] [--order both] [--stream 100000]
          python benchmarks/lstm.py --device cuda --batch 1024      # on a GPU (peak memory per method)
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

import seqlrp

try:
    from benchmarks.timing import device_sync, interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import device_sync, interleaved_medians
from seqlrp.lstm import BiLSTMClassifier

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"


def load_sentences(limit: int | None = None) -> list[list[str]]:
    path = DATA / "dev.tsv"
    if path.exists():
        lines = path.read_text().splitlines()[1:]
        sentences = [line.split("\t")[0].split() for line in lines]
        sentences = [s for s in sentences if s]
    else:  # generated: lengths like SST-2 (1..50 tokens)
        gen = torch.Generator().manual_seed(0)
        lengths = torch.randint(1, 50, (6000,), generator=gen)
        sentences = [[f"w{int(i)}" for i in torch.randint(0, 5000, (int(n),), generator=gen)] for n in lengths]
    return sentences[:limit] if limit else sentences


def batches(sentences, vocab, batch, order: str = "sorted", device="cpu"):
    """``(ids (B, T), lengths (B,))`` batches of ``batch`` sentences, sorted by length or in file order."""
    if order == "sorted":
        index = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    elif order == "file":
        index = list(range(len(sentences)))
    else:
        raise ValueError(f"order must be 'sorted' or 'file', got {order!r}")
    for start in range(0, len(index), batch):
        chunk = [sentences[i] for i in index[start:start + batch]]
        lengths = torch.tensor([len(s) for s in chunk])
        ids = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for row, sentence in enumerate(chunk):
            ids[row, : len(sentence)] = torch.tensor([vocab.setdefault(w, len(vocab) % 20000) for w in sentence])
        yield ids.to(device), lengths  # lengths stay on the CPU (pack_padded_sequence wants them there)


def measure(model, data, repeats: int, device, gradient: bool = True) -> dict:
    """Median seconds of one pass over ``data`` per method, and on CUDA the peak memory of one batch."""

    def forward():
        with torch.no_grad():
            for ids, lengths in data:
                model(ids, lengths)

    def lrp():
        for ids, lengths in data:
            seqlrp.explain_text(model, ids, lengths=lengths)

    def grad():
        for ids, lengths in data:
            seqlrp.baselines.text_gradient(model, ids, lengths=lengths)

    fns = {"forward": forward, "lrp": lrp}
    if gradient:
        fns["gradient"] = grad
    result = {"seconds": interleaved_medians(fns, repeats, sync=device_sync(device))}
    if torch.device(device).type == "cuda":
        peaks = {}
        for name, fn in fns.items():
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            peaks[name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        result["peak_mib"] = peaks
    return result


LABELS = {"forward": "plain forward (no_grad)", "gradient": "gradient (sensitivity)", "lrp": "LRP explain_text (eps)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", default="1024", help="batch size(s), comma-separated: 64,512,1024")
    parser.add_argument("--order", choices=("sorted", "file", "both"), default="both",
                        help="batches of length-sorted sentences, of the file's order, or both")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-gradient", action="store_true", help="skip the gradient baseline")
    parser.add_argument("--stream", type=int, default=100_000, help="sentences streamed for the memory check (0: skip)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = BiLSTMClassifier(20000, 60, 60, 5).eval().to(device)
    sentences = load_sentences()
    n = len(sentences)
    tokens = sum(len(s) for s in sentences)
    orders = ("sorted", "file") if args.order == "both" else (args.order,)
    sizes = [int(b) for b in args.batch.split(",")]
    print(f"{n} sentences ({tokens / n:.1f} tokens on average), {args.threads} threads, float32, {device}, "
          f"median of {args.repeats} after 3 warm-ups")
    cuda = device.type == "cuda"
    print(f"{'batch':>6s} {'order':7s} {'method':26s} {'median s':>9s} {'sentences/s':>12s} {'x forward':>10s}"
          + (f" {'peak MiB':>9s}" if cuda else ""))
    rows, data = [], None
    for size in sizes:
        for order in orders:
            vocab: dict[str, int] = {}
            data = list(batches(sentences, vocab, size, order, device))
            result = measure(model, data, args.repeats, device, gradient=not args.no_gradient)
            base = result["seconds"]["forward"]
            for method, t in result["seconds"].items():
                row = {"batch": size, "order": order, "method": method, "seconds": t, "sentences_per_s": n / t,
                       "ratio": t / base}
                line = f"{size:6d} {order:7s} {LABELS[method]:26s} {t:9.3f} {n / t:12.0f} {t / base:10.2f}"
                if cuda:
                    row["peak_mib"] = result["peak_mib"][method]
                    line += f" {row['peak_mib']:9.1f}"
                rows.append(row)
                print(line, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    if args.stream and data:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        streamed, start = 0, time.perf_counter()
        while streamed < args.stream:
            for ids, lengths in data:
                seqlrp.explain_text(model, ids, lengths=lengths)
                streamed += ids.shape[0]
                if streamed >= args.stream:
                    break
        elapsed = time.perf_counter() - start
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"streamed {streamed} sentences ({order} order, batch {size}) in {elapsed:.1f} s "
              f"({streamed / elapsed:.0f}/s); peak RSS {rss0:.0f} MiB before, {rss1:.0f} MiB after")


if __name__ == "__main__":
    main()
