"""Throughput of LSTM-LRP: sentences/s for explain_text vs the plain forward, same process.

A bidirectional LSTM of the reference's size (e = d = 60, 5 classes, Arras et al. 2017) with random
weights explains the SST-2 dev sentences from ../shared/data/sst2 (or generated sentences when
absent), in float32 batches sorted by length. Also streams N sentences in batches and reports the
peak RSS, to show memory stays bounded.

Run with: GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=68719476736 \
          python benchmarks/lstm.py [--threads 2] [--batch 1024] [--stream 100000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

import seqlrp

try:
    from benchmarks.timing import interleaved_medians
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from timing import interleaved_medians
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


def batches(sentences, vocab, batch):
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for start in range(0, len(order), batch):
        chunk = [sentences[i] for i in order[start:start + batch]]
        lengths = torch.tensor([len(s) for s in chunk])
        ids = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for row, sentence in enumerate(chunk):
            ids[row, : len(sentence)] = torch.tensor([vocab.setdefault(w, len(vocab) % 20000) for w in sentence])
        yield ids, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream", type=int, default=100_000, help="sentences streamed for the memory check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = BiLSTMClassifier(20000, 60, 60, 5).eval()
    sentences = load_sentences()
    vocab: dict[str, int] = {}
    data = list(batches(sentences, vocab, args.batch))
    n = len(sentences)
    tokens = sum(len(s) for s in sentences)

    def forward():
        with torch.no_grad():
            for ids, lengths in data:
                model(ids, lengths)

    def lrp():
        for ids, lengths in data:
            seqlrp.explain_text(model, ids, lengths=lengths)

    def gradient():
        for ids, lengths in data:
            seqlrp.baselines.text_gradient(model, ids, lengths=lengths)

    medians = interleaved_medians({"forward": forward, "gradient": gradient, "lrp": lrp}, args.repeats)
    t_forward, t_grad, t_lrp = medians["forward"], medians["gradient"], medians["lrp"]
    print(f"{n} sentences ({tokens / n:.1f} tokens on average), batch {args.batch}, {args.threads} threads, float32")
    print(f"{'method':28s} {'median s':>10s} {'sentences/s':>12s} {'x forward':>10s}")
    for name, t in (("plain forward (no_grad)", t_forward), ("gradient (sensitivity)", t_grad),
                    ("LRP explain_text (eps)", t_lrp)):
        print(f"{name:28s} {t:10.3f} {n / t:12.0f} {t / t_forward:10.2f}")

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
    print(f"streamed {streamed} sentences in {elapsed:.1f} s ({streamed / elapsed:.0f}/s); "
          f"peak RSS {rss0:.0f} MiB before, {rss1:.0f} MiB after")


if __name__ == "__main__":
    main()
