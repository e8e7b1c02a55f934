"""The bench report's pure parts: percentiles, ratios, targets, and the table with missing figures."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pipeline.tooling.bench import report
from pipeline.tooling.bench.load import pct


def measurements(**over) -> dict:
    m = {
        "jobs_submitted": 10, "jobs_completed": 10,
        "submit": {"latencies": [0.01] * 9 + [0.2], "rps": 50.0, "errors": 0},
        "e2e_wait": [0.05] * 10, "e2e_sse": [0.04] * 10, "real_wait": [0.2], "real_sse": [0.25],
        "notify": [0.004] * 10, "chain": [0.02] * 10, "throughput_drain": 30.0, "chains_drain_s": 100.0,
        "throughput_incl_submit": 20.0, "chains_s": 80.0,
        "chains_completed": 10, "flask": {"latencies": [0.002] * 10, "rps": 400.0},
    }
    m.update(over)
    return m


SETTINGS = {"workers": 2, "web_workers": 2, "concurrency": 32, "database": "sqlite", "real_size": "512x512"}


def test_percentiles_are_nearest_rank():
    # Given 100 values 1..100
    values = list(range(1, 101))
    # Then p50 is the 50th and p99 the 99th; one value is its own every percentile; none is None
    assert pct(values, 50) == 50 and pct(values, 99) == 99
    assert pct([7], 99) == 7 and pct([], 50) is None


def test_ratios_and_targets_from_one_run():
    # Given measurements where SSE is served and the baselines ran
    result = report.build(measurements(), SETTINGS, [])
    # Then the headline e2e is over SSE, and each ratio divides by the same run's baseline
    assert result["e2e_via"] == "sse" and result["e2e_p50_ms"] == 40.0
    assert result["e2e_p50_ratio"] == 2.0 and result["throughput_ratio"] == 0.3
    assert result["submit_rps_ratio"] == 0.125 and result["submit_p99_ms"] == 200.0
    # And each target says whether it is met
    met = {t["key"]: t["met"] for t in result["targets"]}
    assert met["e2e_p50_ratio"] is True and met["throughput_ratio"] is False and met["notify_p50_ms"] is True


def test_throughput_is_the_drain_of_a_full_queue_on_both_sides_or_on_neither():
    # Given both sides had a full queue left once submission ended
    result = report.build(measurements(), SETTINGS, [])
    # Then the throughput compares the two drains, and the figure with submission is kept beside it
    assert result["throughput_measured_as"] == "drain" and result["throughput_jobs_s"] == 30.0
    assert result["baseline"]["chains_s"] == 100.0 and result["throughput_incl_submit_ratio"] == 0.25
    # Given genline's workers kept up with submission (nothing left to drain)
    result = report.build(measurements(throughput_drain=None), SETTINGS, [])
    # Then both sides are measured from the first submit instead, never one of each
    assert result["throughput_measured_as"] == "from-first-submit"
    assert result["throughput_jobs_s"] == 20.0 and result["throughput_ratio"] == 0.25


def test_drain_rate_counts_only_completions_after_the_last_submit():
    from pipeline.tooling.bench.load import drain_rate

    def job(created, completed):
        stamp = lambda s: f"2026-01-01T00:00:{s:06.3f}Z"  # noqa: E731
        return {"status": "completed", "created_at": stamp(created), "completed_at": stamp(completed)}
    # Given 10 jobs created over 1 s, 2 done during submission, 8 in the 2 s after it
    jobs = [job(0.1 * i, 0.5 + 0.1 * i) for i in range(2)] + [job(0.1 * i + 0.2, 1.25 + 0.25 * i) for i in range(8)]
    # Then the rate is 8 jobs over (3.0 - 0.9) s
    assert drain_rate(jobs) == pytest.approx(8 / 2.1)
    # And with too little left after submission there is no drain figure
    assert drain_rate([job(0.1 * i, 0.05 + 0.1 * i) for i in range(10)]) is None
    # And when the worker was busy after the last completion (notify steps), the drain runs until it was idle
    idle_at = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc).timestamp()
    assert drain_rate(jobs, idle_at) == pytest.approx(8 / 4.1)


def test_without_sse_or_baselines_the_figures_are_null_not_errors():
    # Given a deployment without SSE, and --no-baseline
    m = measurements(e2e_sse=None, real_sse=None, notify=None, chain=[], chains_s=None, chains_drain_s=None, flask=None)
    result = report.build(m, SETTINGS, ["no SSE"])
    # Then e2e falls back to ?wait, ratios and notify are null, targets unmeasured, and the table still renders
    assert result["e2e_via"] == "wait" and result["e2e_p50_ms"] == 50.0
    assert result["e2e_p50_ratio"] is None and result["notify_p50_ms"] is None
    assert all(t["met"] is None for t in result["targets"] if t["key"] != "submit_p99_ms")
    text = report.table(result)
    assert "note: no SSE" in text and "submit req/s" in text


def test_the_plot_is_a_png_of_the_series_that_have_samples(tmp_path):
    # Given matplotlib (the optional 'bench' extra) and some series, one of them empty
    pytest.importorskip("matplotlib")
    samples = {"submit": [0.01, 0.02, 0.5], "raw chain": [0.02] * 5, "notify": None}
    # When it is plotted
    out = tmp_path / "latency.png"
    report.plot(samples, str(out))
    # Then a PNG file is written
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
