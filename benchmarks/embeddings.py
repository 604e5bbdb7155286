"""The encoder stage and semantic dedup against plain sentence-transformers and semhash, on this machine.

    .venv/bin/python benchmarks/embeddings.py [--threads 2] [--threshold 0.9]

Two corpora:
- speed: 1,600 templated questions ("How do I {verb} {subject} {context}?", seeded) plus a reworded copy of every
  tenth one: many same-topic texts, as a generator's output has;
- quality: the built-in seed tasks, short-answer questions and the 100 customer messages (many about the same
  refund or login trouble, saying different things), the first text of each of the 24 hand-written paraphrase pairs
  of tests/data/paraphrases.json and of the 16 same-topic pairs; planted: the 24 paraphrases. A row dropped that was
  not planted is a false positive.

1. Encoding (speed corpus): synthray's embed stage (``EmbedStage`` on Arrow batches of 256 rows, as the pipeline
   hands them) against ``SentenceTransformer.encode`` of the same model on the same texts, same threads, alternated,
   best of two. Printed: docs/s of each and ``ratio`` (stage / plain; target >= 0.9).
2. Dedup at a cosine threshold (``--threshold``): synthray's semantic_dedup (the faiss index actor, batches of 256,
   first seen wins) against semhash's ``self_deduplicate`` with the same encoder, encoding included: docs/s on the
   speed corpus, recall and false positives on the quality corpus.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SUBJECTS = [
    "my laptop",
    "the invoice",
    "a sourdough starter",
    "the garden hose",
    "my passport",
    "the router",
    "a tax return",
    "the bike chain",
    "my phone battery",
    "the kitchen sink",
    "a job interview",
    "the car insurance",
    "a birthday party",
    "the thermostat",
    "my credit card",
    "a rental lease",
]
VERBS = ["fix", "renew", "clean", "cancel", "prepare for", "replace", "set up", "pay for", "store", "check"]
CONTEXTS = [
    "before winter",
    "on a budget",
    "without tools",
    "in one afternoon",
    "while travelling",
    "for a beginner",
    "after a move",
    "with a toddler around",
    "in a small flat",
    "on a weekend",
]
SYNONYMS = {
    "fix": "repair",
    "clean": "wash",
    "cancel": "call off",
    "replace": "swap out",
    "store": "keep",
    "check": "inspect",
    "prepare for": "get ready for",
    "set up": "install",
    "renew": "extend",
    "pay for": "cover the cost of",
}


def speed_corpus(docs: int = 1600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    combos = [(s, v, c) for s in SUBJECTS for v in VERBS for c in CONTEXTS]
    rng.shuffle(combos)
    texts = []
    for n, (subject, verb, context) in enumerate(combos[:docs]):
        texts.append(f"How do I {verb} {subject} {context}?")
        if n % 10 == 0:
            texts.append(f"Could you tell me how to {SYNONYMS[verb]} {subject} {context}, please?")
    return texts


def quality_corpus() -> tuple[list[str], set[int]]:
    """(texts, positions of the planted paraphrases)."""
    from generation.seeds import builtin_seeds

    pairs = json.loads((REPO / "tests" / "data" / "paraphrases.json").read_text())
    texts = [row["instruction"] for name in ("seed_tasks", "short_answers") for row in builtin_seeds(name)]
    texts += [row["text"] for row in builtin_seeds("texts")]
    texts += [first for first, _ in pairs["different"]]
    texts += [first for first, _, _ in pairs["paraphrases"]]
    texts = list(dict.fromkeys(texts))  # the same-topic pairs start from the paraphrases' first texts
    planted = set(range(len(texts), len(texts) + len(pairs["paraphrases"])))
    return texts + [second for _, second, _ in pairs["paraphrases"]], planted


def encode_rates(texts: list[str], threads: int, batch: int = 256) -> tuple[float, float]:
    import pyarrow as pa
    import torch

    from generation.embeddings import EmbedStage, Encoder

    torch.set_num_threads(threads)
    stage = EmbedStage(encoder={"threads": threads}, specs={"_embedding:text": ["text"]})
    plain = Encoder(threads=threads).model  # the same folder, loaded by sentence-transformers itself
    batches = [
        pa.table({"text": texts[i : i + batch], "status": ["ok"] * len(texts[i : i + batch])})
        for i in range(0, len(texts), batch)
    ]
    stage(batches[0])  # warm both
    plain.encode(texts[:batch], batch_size=64)
    rates = {}
    for name in ("plain", "stage", "plain", "stage"):  # alternating, best of two each
        started = time.perf_counter()
        if name == "stage":
            for table in batches:
                stage(table)
        else:
            plain.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
        rates[name] = max(rates.get(name, 0.0), len(texts) / (time.perf_counter() - started))
    return rates["stage"], rates["plain"]


def synthray_dedup(texts: list[str], threshold: float, batch: int = 256) -> tuple[float, set[int]]:
    import ray

    from filtering.semantic_dedup import SemanticDedupFilter
    from generation.embeddings import Encoder, embedding_column

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        encoder = Encoder(threads=2)
        encoder.encode(texts[:8])  # loaded before the clock starts, as semhash's model is
        filt = SemanticDedupFilter(threshold, ["text"], shards=SemanticDedupFilter.start_state(threshold))
        column = embedding_column(["text"])
        dropped = set()
        started = time.perf_counter()
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            vectors = encoder.encode(chunk)
            rows = [{"id": str(start + i), column: v} for i, v in enumerate(vectors)]
            dropped.update(start + i for i, (keep, _) in enumerate(filt.keep_batch(rows)) if not keep)
        return len(texts) / (time.perf_counter() - started), dropped
    finally:
        ray.shutdown()


def semhash_dedup(texts: list[str], threshold: float) -> tuple[float, set[int]]:
    from semhash import SemHash

    from generation.embeddings import Encoder

    model = Encoder(threads=2).model
    started = time.perf_counter()
    result = SemHash.from_records(texts, model=model).self_deduplicate(threshold=threshold)
    elapsed = time.perf_counter() - started
    kept = {text: i for i, text in reversed(list(enumerate(texts)))}  # every text is distinct: first position
    selected = {kept[text] for text in result.selected}
    return len(texts) / elapsed, set(range(len(texts))) - selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.9)
    args = parser.parse_args()
    fast = speed_corpus()
    texts, planted = quality_corpus()
    print(f"speed corpus {len(fast):,} texts; quality corpus {len(texts):,} texts, {len(planted)} planted paraphrases")
    stage, plain = encode_rates(fast, args.threads)
    print(f"encode: synthray stage {stage:,.0f} docs/s, SentenceTransformer.encode {plain:,.0f} docs/s")
    print(f"ratio {stage / plain:.3f}")
    for name, dedup in (("synthray semantic_dedup", synthray_dedup), ("semhash self_deduplicate", semhash_dedup)):
        rate, _ = dedup(fast, args.threshold)
        _, dropped = dedup(texts, args.threshold)
        recall = len(dropped & planted) / len(planted)
        print(
            f"{name} at {args.threshold}: {rate:,.0f} docs/s (encoding included), recall {recall:.3f} "
            f"({len(dropped & planted)}/{len(planted)}), {len(dropped - planted)} unplanted rows dropped"
        )


if __name__ == "__main__":
    main()
