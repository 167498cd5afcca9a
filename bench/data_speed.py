"""Tokens/s of the data pipeline against bare ``tiktoken.encode_ordinary_batch`` on the same text, in one run.

The pipeline's overhead is everything around the tokenizer: streaming the files through `datasets`, the shuffle
buffer, <|endoftext|> insertion, packing into (B, T) windows. Target: ratio >= 0.8 (at most 20% overhead).

    python bench/data_speed.py                        # the embedded python-stdlib corpus
    python bench/data_speed.py --source DIR_OR_GLOB   # any source the data module reads
    python bench/data_speed.py --workers 4            # also: one rank's stream read by 4 DataLoader workers
    python bench/data_speed.py --tokenizer DIR        # a trained tokenizer: the pipeline runs it, and its bare
                                                      # encoding is timed against GPT-2's (target: >= 0.8x tok/s)
    python bench/data_speed.py --mixture              # a three-source mixture against one source of the same text
                                                      # (target: >= 0.9x)

With ``--workers``, the figure is what one training process gets from the stream (tokens/s per rank), against what
one H100 consumes training GPT-2 124M (about 470k tokens/s): the streaming path keeps up when the ratio is >= 1.
"""

import argparse
import time

from gpt_scratch.data import PackedBatches, TextSource, WorkerBatches, open_documents
from gpt_scratch.data.mixture import MixtureBatches, mixture_entries
from gpt_scratch.data.stream import ReadOptions
from gpt_scratch.tokenizer import gpt2_encoding, load_tokenizer


def bare_tokens_per_second(encoding, docs: list[str], threads: int, rounds: int = 3) -> tuple[int, float]:
    """Tokens (plus one <|endoftext|> per document) and the best tokens/s of ``rounds`` passes over ``docs``."""
    best = 0.0
    for _ in range(rounds):
        start, total = time.perf_counter(), 0
        for i in range(0, len(docs), 64):
            total += sum(len(ids) + 1 for ids in encoding.encode_ordinary_batch(docs[i : i + 64], num_threads=threads))
        best = max(best, total / (time.perf_counter() - start))
    return total, best


def streamed_tokens_per_second(data, tokens: int) -> float:
    """Tokens/s of ``data.next_batch()`` (shuffled and endless, as training reads) over ``tokens`` tokens, reading
    and tokenizing included, in the steady state: after ``tokens // 2`` untimed ones, which open the files and fill
    the buffers (each source of a mixture reads 256 documents ahead, as one source does: a one-off cost, not
    throughput)."""
    emitted = 0
    while emitted < tokens // 2:
        emitted += data.next_batch()[0].numel()
    emitted, start = 0, time.perf_counter()
    while emitted < tokens:
        emitted += data.next_batch()[0].numel()
    return emitted / (time.perf_counter() - start)


def mixture_against_one_source(args, tokenizer) -> None:
    """The same text as one source and as a mixture of three, both shuffled as training reads them, alternating
    rounds, the best of each: ``--source`` against three streams of it (weights 0.5, 0.3, 0.2), each with its own
    shuffle, epochs and buffers, as a mixture of three corpora reads them."""
    one = TextSource(args.source)
    entries = mixture_entries([{"path": args.source, "weight": weight, "label": f"part-{index}"}
                               for index, weight in enumerate((0.5, 0.3, 0.2))])  # fmt: skip
    best_one = best_mixture = 0.0
    for _ in range(args.rounds):
        single = PackedBatches(one, args.batch_size, args.seq_len, tokenize_threads=args.threads, tokenizer=tokenizer)
        options = ReadOptions(args.batch_size, args.seq_len, tokenizer=tokenizer)
        mixture = MixtureBatches(entries, options, tokenize_threads=args.threads)
        best_one = max(best_one, streamed_tokens_per_second(single, args.mixture_tokens))
        best_mixture = max(best_mixture, streamed_tokens_per_second(mixture, args.mixture_tokens))
    print(f"one source ({args.source})           {best_one:12,.0f} tok/s")
    print(f"three-source mixture of the same text {best_mixture:12,.0f} tok/s | ratio mixture/one source "
          f"{best_mixture / best_one:.3f} (target >= 0.9; B={args.batch_size} T={args.seq_len}, best of "
          f"{args.rounds} rounds of {args.mixture_tokens:,} tokens)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="python-stdlib")
    parser.add_argument("--docs", type=int, default=1500, help="documents to read")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=4, help="tiktoken threads, for both")
    parser.add_argument("--workers", type=int, default=0, help="also time WorkerBatches with this many workers")
    parser.add_argument("--h100-tokens-per-s", type=float, default=470_000)
    parser.add_argument("--tokenizer", default="gpt2", help="gpt2, or a directory from gpt_scratch.tokenizer train")
    parser.add_argument("--mixture", action="store_true", help="only: a three-source mixture against one source")
    parser.add_argument("--mixture-tokens", type=int, default=16_000_000, help="tokens timed per round (--mixture)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each (--mixture)")
    args = parser.parse_args()
    if args.mixture:
        mixture_against_one_source(args, load_tokenizer(args.tokenizer))
        return
    source = TextSource(args.source)

    docs = [row["text"] for row in open_documents(source).take(args.docs)]
    tokenizer = load_tokenizer(args.tokenizer)
    total, bare = bare_tokens_per_second(tokenizer.encoding, docs, args.threads)

    # The pipeline over the same documents: canonical order, one epoch, so it reads exactly the text timed above.
    data = PackedBatches(source, args.batch_size, args.seq_len, shuffle=False, tokenize_threads=args.threads,
                         tokenizer=tokenizer)  # fmt: skip
    data._ensure_stream()  # opening the stream (listing files) is a one-off cost, not throughput
    emitted = 0
    start = time.perf_counter()
    while emitted + args.batch_size * args.seq_len <= total:
        inputs, _ = data.next_batch()
        emitted += inputs.numel()
    pipeline = emitted / (time.perf_counter() - start)

    print(f"source={args.source} docs={len(docs)} tokens={total} B={args.batch_size} T={args.seq_len} "
          f"tokenizer={args.tokenizer}")  # fmt: skip
    print(f"bare tiktoken.encode_ordinary_batch {bare:12,.0f} tok/s")
    if args.tokenizer != "gpt2":
        size = sum(len(doc.encode("utf-8", "surrogatepass")) for doc in docs)
        gpt2_total, gpt2 = bare_tokens_per_second(gpt2_encoding(), docs, args.threads)
        print(f"  GPT-2's encoding, same text       {gpt2:12,.0f} tok/s | ratio ours/GPT-2 {bare / gpt2:.3f} "
              f"(bytes/s: {bare * size / total / 1e6:.1f} vs {gpt2 * size / gpt2_total / 1e6:.1f} MB/s; "
              f"{size / total:.2f} vs {size / gpt2_total:.2f} bytes per token)")  # fmt: skip
    print(f"gpt_scratch.data pipeline           {pipeline:12,.0f} tok/s | ratio pipeline/bare {pipeline / bare:.3f}")
    if args.workers:
        # Shuffled, endless, as training reads it; the first batch (worker start-up, opening files) is not timed.
        data = PackedBatches(source, args.batch_size, args.seq_len, tokenize_threads=args.threads, tokenizer=tokenizer)
        loader = WorkerBatches(data, args.workers)
        loader.next_batch()
        emitted, start = 0, time.perf_counter()
        while emitted < 2 * total:
            emitted += loader.next_batch()[0].numel()
        workers = emitted / (time.perf_counter() - start)
        ratio = workers / args.h100_tokens_per_s
        label = f"{args.workers} DataLoader workers (one rank)"
        print(f"{label:35s} {workers:12,.0f} tok/s | ratio to one H100 at 124M {ratio:.2f}")


if __name__ == "__main__":
    main()
