"""Filter throughput (docs/s on one core) and near-dup quality, with datasketch as the MinHash baseline if installed.

    .venv/bin/python benchmarks/filters.py [--docs 100000]

Targets (issue 4): heuristic filters >= 20,000 docs/s/core; MinHash signatures >= 10,000 docs/s/core; near-dup
recall >= 0.95 for pairs with Jaccard >= 0.8 and false-positive rate <= 0.5 for pairs with Jaccard <= 0.5.
The last line is a one-line summary; the exit code is non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filtering.fineweb import FineWebQualityFilter  # noqa: E402
from filtering.gopher import GopherQualityFilter, GopherRepetitionFilter  # noqa: E402
from filtering.length import LengthFilter  # noqa: E402
from filtering.near_dedup import NearDedupFilter, shingles  # noqa: E402
from filtering.pii import PIIRedactor  # noqa: E402
from filtering.refusal import RefusalFilter  # noqa: E402

WORDS = (  # noqa: SIM905 (common English words, so the Gopher rules see natural text)
    "the of and to in is that it was for on are with as be at by this had not but from or have an they "
    "which one you were all we her she there would their will when who him been has more if no out so "
    "said what up its about than into them can only other new some could time these two may then do first "
    "any my now such like our over man me even most made after also did many before must through back "
    "years where much your way well down should because each just those people how too little state good "
    "very make world still own see men work long get here between both life being under never day same "
    "another know while last might us great old year off come since against go came right used take three "
    "lighthouse harbour engine river garden "
).split()


def corpus(n: int, seed: int = 0) -> list[str]:
    """Documents of about 1,350 characters: sentences of common words, a few lists and repeated lines mixed in."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        sentences = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 18))).capitalize() + "."
            for _ in range(rng.randint(16, 24))
        ]
        if i % 10 == 0:
            sentences = [f"- {s}" for s in sentences]
        if i % 17 == 0:
            sentences += sentences[:5]
        docs.append("\n".join(" ".join(sentences[j : j + 3]) for j in range(0, len(sentences), 3)))
    return docs


def rate(filt, docs: list[str]) -> float:
    filt.bind_fields(["text"])
    rows = [{"text": d} for d in docs]
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        filt.keep_batch(rows[start : start + 1000])
    return len(rows) / (time.perf_counter() - started)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def near_dup_quality(pairs: int = 400, seed: int = 1) -> tuple[float, float]:
    """(recall at Jaccard >= 0.8, false-positive rate at Jaccard <= 0.5) of 14x8 LSH band collisions."""
    rng = random.Random(seed)
    lsh = NearDedupFilter()
    hits = {"high": [0, 0], "low": [0, 0]}
    for _ in range(pairs):
        words = [rng.choice(WORDS) + str(rng.randint(0, 50)) for _ in range(200)]
        copy = list(words)
        for k in rng.sample(range(200), rng.choice([2, 4, 8, 40, 60, 80])):
            copy[k] = "edit" + str(rng.random())
        j = jaccard(set(shingles(" ".join(words), 5)), set(shingles(" ".join(copy), 5)))
        bucket = "high" if j >= 0.8 else "low" if j <= 0.5 else None
        if bucket:
            collide = bool(set(lsh.band_keys(" ".join(words))) & set(lsh.band_keys(" ".join(copy))))
            hits[bucket][0] += collide
            hits[bucket][1] += 1
    return hits["high"][0] / max(1, hits["high"][1]), hits["low"][0] / max(1, hits["low"][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    args = parser.parse_args()
    docs = corpus(args.docs)
    print(f"corpus: {len(docs):,} documents, mean {sum(map(len, docs)) / len(docs):,.0f} chars")
    misses = []
    for filt in (
        LengthFilter(min_chars=10),
        RefusalFilter(),
        PIIRedactor(),
        GopherQualityFilter(),
        GopherRepetitionFilter(),
        FineWebQualityFilter(),
    ):
        docs_per_s = rate(filt, docs)
        print(f"{filt.name:18s} {docs_per_s:10,.0f} docs/s/core (target 20,000)")
        if docs_per_s < 20_000:
            misses.append(filt.name)
    lsh = NearDedupFilter()
    started = time.perf_counter()
    for d in docs:
        lsh.band_keys(d)
    minhash_rate = len(docs) / (time.perf_counter() - started)
    line = f"minhash (rensa)    {minhash_rate:10,.0f} docs/s/core (target 10,000)"
    try:
        from datasketch import MinHash

        sample = docs[: min(len(docs), 5000)]
        started = time.perf_counter()
        for d in sample:
            m = MinHash(num_perm=112)
            m.update_batch([s.encode() for s in shingles(d, 5)])
        baseline = len(sample) / (time.perf_counter() - started)
        line += f"; datasketch {baseline:,.0f} docs/s → ratio {minhash_rate / baseline:.1f}"
    except ImportError:
        line += "; datasketch not installed (pip install datasketch) for the baseline"
    print(line)
    if minhash_rate < 10_000:
        misses.append("minhash")
    recall, fpr = near_dup_quality()
    print(
        f"near-dup quality: recall {recall:.3f} at Jaccard >= 0.8 (target 0.95), "
        f"false-positive rate {fpr:.3f} at Jaccard <= 0.5 (target <= 0.5)"
    )
    if recall < 0.95 or fpr > 0.5:
        misses.append("near_dup_quality")
    print(
        f"summary: minhash {minhash_rate:,.0f} docs/s, recall {recall:.3f}, fpr {fpr:.3f}; "
        f"missed: {', '.join(misses) or 'none'}"
    )
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
