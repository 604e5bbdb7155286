"""The run report and the dataset card: figures, the rebuild command, the card's loading snippets, a real browser."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow as pa
import pytest

from rayjobs import quality, report
from rayjobs.pipeline import run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_distinct_n_compression_and_duplicates():
    toks = [quality.tokens("A b a B."), quality.tokens("c")]
    assert toks[0] == ["a", "b", "a", "b", "."]
    assert quality.distinct_n(toks, 1) == 4 / 6  # a b . c over six tokens
    assert quality.distinct_n(toks, 2) == 3 / 4  # (a b) (b a) (a b) (b .)
    assert quality.distinct_n([["x"]], 2) == 0.0
    varied = [f"sentence {i} about {w}" for i, w in enumerate(["rivers", "maps", "owls", "tea", "glass", "wind"])]
    assert quality.compression_ratio(["the same line"] * 200) > 3 * quality.compression_ratio(varied)
    assert quality.duplicate_rate(["A  b", "a b", "c"]) == pytest.approx(1 / 3)


def test_reasons_fold_digits_and_overlap_with_seeds():
    table = pa.table({"rejected_by": ["length", "length", "echo"], "reason": ["3 words < 5", "4 words < 5", "copy"]})
    assert quality.reason_counts(table, "rejected_by", "reason") == {
        "echo": [["copy", 1]],
        "length": [["N words < N", 2]],
    }
    overlap = quality.vocabulary_overlap(["red fox jumps"], quality.seed_texts(['{"id": "x", "t": "red fox"}', "bad"]))
    assert overlap == {"data_vocabulary": 3, "seed_vocabulary": 2, "data_in_seeds": 0.6667, "seeds_in_data": 1.0}
    scores = pa.table({"score": [1], "confidence": [0.5], "completion_tokens": [3], "sample_index": [0]})
    assert quality.score_columns(scores) == ["score", "confidence"]


def test_funnel_stages_follow_filter_order_with_recipe_checks_first():
    summary = {
        "seeds_read": 10,
        "generated": 20,
        "kept": 12,
        "errors": 1,
        "rejected_by": {"exact_dedup": 3, "length": 2, "targen": 3},
        "filters": [{"step": "length"}, {"step": "exact_dedup"}],
    }
    labels = [label for label, _, _ in report.funnel_stages(summary)]
    assert labels == [
        "seeds read",
        "samples generated",
        "dropped by targen",
        "dropped by length",
        "dropped by exact_dedup",
        "kept",
        "errors",
    ]


@pytest.fixture(scope="module")
def labeled_run(ray_session, tmp_path_factory):
    """A dry-run pseudo-labeling run whose length filter rejects part of the samples: every report section."""
    from tests.conftest import make_config

    out = tmp_path_factory.mktemp("report") / "out"
    config = make_config(
        [
            "model=dry_run",
            "recipe=pseudo_label",
            "source.limit=12",
            "filters.length.min_words=12",
            f"sink.uri={out}",
            "cluster.progress_bars=false",
        ]
    )
    return run(config)


def _images(html: str) -> list[str]:
    return re.findall(r"<img src='data:image/png;base64,([A-Za-z0-9+/=]+)' alt='([^']*)'", html)


def test_report_has_funnel_throughput_quality_balance_and_samples(labeled_run):
    sink, summary = labeled_run.sink, labeled_run.summary
    assert summary["rejected"] > 0 and summary["kept"] > 0, summary
    generation = summary["generation"]  # per second: [seconds since start, completion tokens, samples]
    assert sum(p[1] for p in generation) == summary["completion_tokens"] and sum(p[2] for p in generation) == 12
    html = sink.read_text("report.html")
    alts = [alt for _, alt in _images(html)]
    assert alts == [
        "funnel: rows at each stage",
        "throughput over time",
        "length histograms",
        "balance",
        "score histograms",
    ]
    for name in ("distinct-1", "compression ratio", "Vocabulary overlap with the seeds", "top reasons"):
        assert name in html
    assert "too_few_words:text (" in html  # the reason with its count, in the filter table
    assert html.count("class='card rejected'") == min(summary["rejected"], report.EXAMPLES)
    assert "<option>length</option>" in html and "<option>echo</option>" in html  # every filter, even idle ones
    record = json.loads(sink.read_text("run.json"))
    figures = record["quality"]
    assert set(figures["fields"]) == {"text"} and 0 < figures["fields"]["text"]["distinct_1"] <= 1
    assert figures["dedup"]["after"] == 0.0 and figures["seed_overlap"]["seed_vocabulary"] > 0
    assert record["run"]["text_fields"] == ["text"] and record["run"]["balance_fields"] == ["label"]


def test_rebuild_from_an_existing_output(labeled_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(labeled_run.sink.uri, copy)
    (copy / "report.html").unlink()
    (copy / "README.md").write_text("stale")
    record = json.loads((copy / "run.json").read_text())
    record["config"]["source"] = {"kind": "jsonl", "uri": str(tmp_path / "gone.jsonl")}  # seeds elsewhere now
    (copy / "run.json").write_text(json.dumps(record))
    report.main([str(copy)])
    assert "rebuilt" in capsys.readouterr().out
    html = (copy / "report.html").read_text()
    assert len(_images(html)) == 5 and "Label and attribute balance" in html
    rebuilt = json.loads((copy / "run.json").read_text())
    assert rebuilt["quality"]["seed_overlap"] == record["quality"]["seed_overlap"]  # kept, not lost
    assert "## Load it" in (copy / "README.md").read_text()
    with pytest.raises(SystemExit, match="no run.json"):
        report.main([str(tmp_path)])


def test_dataset_card_snippets_load_the_kept_rows(labeled_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    card = labeled_run.sink.read_text("README.md")
    # The quality figures are in the run's first card, not only in one rebuilt from run.json.
    for needed in ("| model license | none", "pseudo_label", "filters (in order)", "`length` {", "## Quality figures"):
        assert needed in card
    assert card.startswith("---\npretty_name: synthray-demo\n")
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(snippets) == 3
    kept = labeled_run.summary["kept"]
    namespace: dict = {}
    for code in snippets:
        exec(code, namespace)  # noqa: S102 - the card's own snippets, as a user would paste them
    assert namespace["ds"].num_rows == kept and "text" in namespace["ds"].column_names
    assert len(namespace["df"]) == kept
    assert re.search(rf"│\s+{kept}\s+│", capsys.readouterr().out)  # DuckDB's printed count(*)


@pytest.mark.skipif(CHROMIUM is None and not __import__("os").environ.get("CI"), reason="no Chromium on this machine")
def test_report_renders_in_headless_chromium(labeled_run, tmp_path):
    """The page loads offline in a real browser with every figure decoded, no console errors, a working filter."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "CI needs Debian's chromium (scripts/setup.sh installs it)"
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on(
            "request",
            lambda r: problems.append(f"request: {r.url}") if not r.url.startswith(("file:", "data:")) else None,
        )
        page.goto(f"file://{labeled_run.sink.uri}/report.html")
        sizes = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        assert len(sizes) == 5 and all(done and width > 300 for _, done, width in sizes), sizes
        assert page.locator("h2").all_inner_texts()[:3] == ["Funnel", "Models by role", "Throughput"]
        visible = "Array.from(document.querySelectorAll('#rejected .card')).filter(c => c.offsetParent).length"
        before = page.evaluate(visible)
        page.select_option("#reject-filter", "echo")  # no row was dropped by it: every card hides
        assert before > 0 and page.evaluate(visible) == 0
        page.select_option("#reject-filter", "length")
        assert page.evaluate(visible) == before
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert (tmp_path / "report.png").stat().st_size > 50_000
