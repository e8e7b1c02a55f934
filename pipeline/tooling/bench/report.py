"""The bench report: figures, ratios to the baseline, the targets of issue 7, and its renderings
(a plain table for people, JSON for machines, an optional PNG of the latency distributions)."""
from __future__ import annotations

import json

from pipeline.tooling.bench.load import pct

TARGETS = [
    # (key, comparison, bound, what the issue asks)
    ("e2e_p50_ratio", "<=", 2.0, "end-to-end p50 at most 2.0x the raw chain"),
    ("e2e_p99_ratio", "<=", 3.0, "end-to-end p99 at most 3.0x the raw chain"),
    ("throughput_ratio", ">=", 0.6, "throughput at least 60% of the raw chain's"),
    ("submit_p99_ms", "<=", 50.0, "submit p99 at most 50 ms"),
    ("submit_rps_ratio", ">=", 0.5, "submit at least 50% of bare Flask's requests/s"),
    ("notify_p50_ms", "<=", 5.0, "notify p50 at most 5 ms"),
    ("notify_p99_ms", "<=", 25.0, "notify p99 at most 25 ms"),
]


def ms(values) -> tuple[float | None, float | None]:
    """(p50, p99) in milliseconds of a list of seconds (None, None when there is none)."""
    if not values:
        return None, None
    return round(pct(values, 50) * 1000, 2), round(pct(values, 99) * 1000, 2)


def _round(value, digits: int = 2):
    return round(value, digits) if value is not None else None


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(result: dict) -> list[dict]:
    """Each target with the measured value and whether it is met (None when not measured)."""
    out = []
    for key, op, bound, text in TARGETS:
        value = result.get(key)
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out.append({"key": key, "target": f"{op} {bound:g}", "value": value, "met": met, "what": text})
    return out


def build(m: dict, settings: dict, notes: list[str]) -> dict:
    """The report object from the raw measurements ``m`` (lists of seconds, counts, rates)."""
    sub50, sub99 = ms(m["submit"]["latencies"])
    w50, w99 = ms(m["e2e_wait"])
    s50, s99 = ms(m["e2e_sse"])
    rw50, rw99 = ms(m["real_wait"])
    rs50, rs99 = ms(m["real_sse"])
    n50, n99 = ms(m["notify"])
    c50, c99 = ms(m["chain"])
    f50, f99 = ms(m["flask"]["latencies"]) if m.get("flask") else (None, None)
    via_sse = m["e2e_sse"] is not None and bool(m["e2e_sse"])
    e50, e99 = (s50, s99) if via_sse else (w50, w99)
    flask_rps = m["flask"]["rps"] if m.get("flask") else None
    # Throughput at saturation: the drain of a full queue once submission ended, on
    # both sides; if either side had too little left to drain, both from the first send.
    drain_ok = m.get("throughput_drain") is not None and (m["chains_s"] is None or m.get("chains_drain_s") is not None)
    throughput = m["throughput_drain"] if drain_ok else m["throughput_incl_submit"]
    chains_s = m.get("chains_drain_s") if drain_ok else m["chains_s"]
    measured_as = "drain" if drain_ok else "from-first-submit"
    result = {
        "jobs_submitted": m["jobs_submitted"], "jobs_completed": m["jobs_completed"],
        "submit_rps": round(m["submit"]["rps"], 1), "submit_p50_ms": sub50, "submit_p99_ms": sub99,
        "submit_errors": m["submit"]["errors"], "submit_rps_ratio": ratio(m["submit"]["rps"], flask_rps),
        "e2e_via": "sse" if via_sse else "wait", "e2e_p50_ms": e50, "e2e_p99_ms": e99,
        "e2e_p50_ratio": ratio(e50, c50), "e2e_p99_ratio": ratio(e99, c99),
        "e2e_wait_p50_ms": w50, "e2e_wait_p99_ms": w99, "e2e_sse_p50_ms": s50, "e2e_sse_p99_ms": s99,
        "e2e_real_size": settings["real_size"], "e2e_real_wait_p50_ms": rw50, "e2e_real_wait_p99_ms": rw99,
        "e2e_real_sse_p50_ms": rs50, "e2e_real_sse_p99_ms": rs99,
        "throughput_jobs_s": _round(throughput),
        "throughput_ratio": ratio(throughput, chains_s),
        "throughput_measured_as": measured_as,
        "throughput_until": m.get("drain_until"),
        "throughput_incl_submit_jobs_s": _round(m["throughput_incl_submit"]),
        "throughput_incl_submit_ratio": ratio(m["throughput_incl_submit"], m["chains_s"]),
        "notify_p50_ms": n50, "notify_p99_ms": n99,
        "baseline": {"chain_p50_ms": c50, "chain_p99_ms": c99,
                     "chains_s": _round(chains_s), "chains_from_first_send_s": _round(m["chains_s"]),
                     "chains_completed": m.get("chains_completed"),
                     "flask_rps": round(flask_rps, 1) if flask_rps else None, "flask_p50_ms": f50, "flask_p99_ms": f99},
        "settings": settings,
        "notes": notes,
    }
    result["targets"] = targets(result)
    return result


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2)


def _fmt(value, unit="") -> str:
    if value is None:
        return "-"
    return f"{value:g}{unit}"


def table(result: dict) -> str:
    """The report as plain text: figures, baseline, ratio and target per row."""
    b = result["baseline"]
    rows = [
        ("submit req/s", result["submit_rps"], b["flask_rps"], result["submit_rps_ratio"], ">= 0.5x"),
        ("submit p50 ms", result["submit_p50_ms"], b["flask_p50_ms"], None, ""),
        ("submit p99 ms", result["submit_p99_ms"], b["flask_p99_ms"], None, "<= 50"),
        (f"e2e p50 ms ({result['e2e_via']})", result["e2e_p50_ms"], b["chain_p50_ms"], result["e2e_p50_ratio"], "<= 2.0x"),
        (f"e2e p99 ms ({result['e2e_via']})", result["e2e_p99_ms"], b["chain_p99_ms"], result["e2e_p99_ratio"], "<= 3.0x"),
        ("e2e ?wait p50/p99 ms", f"{_fmt(result['e2e_wait_p50_ms'])}/{_fmt(result['e2e_wait_p99_ms'])}", None, None, ""),
        ("e2e SSE p50/p99 ms", f"{_fmt(result['e2e_sse_p50_ms'])}/{_fmt(result['e2e_sse_p99_ms'])}", None, None, ""),
        (f"e2e {result['e2e_real_size']} ?wait p50/p99",
         f"{_fmt(result['e2e_real_wait_p50_ms'])}/{_fmt(result['e2e_real_wait_p99_ms'])}", None, None, ""),
        (f"e2e {result['e2e_real_size']} SSE p50/p99",
         f"{_fmt(result['e2e_real_sse_p50_ms'])}/{_fmt(result['e2e_real_sse_p99_ms'])}", None, None, ""),
        (f"throughput jobs/s ({result['throughput_measured_as']})", result["throughput_jobs_s"], b["chains_s"],
         result["throughput_ratio"], ">= 0.6x"),
        ("throughput incl. submit", result["throughput_incl_submit_jobs_s"], b["chains_from_first_send_s"],
         result["throughput_incl_submit_ratio"], ""),
        ("notify p50 ms", result["notify_p50_ms"], None, None, "<= 5"),
        ("notify p99 ms", result["notify_p99_ms"], None, None, "<= 25"),
    ]
    head = ("figure", "genline", "baseline", "ratio", "target")
    cells = [head] + [tuple(_fmt(c) if not isinstance(c, str) else c for c in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = result["settings"]
    lines.append("")
    lines.append(f"jobs submitted {result['jobs_submitted']}, completed {result['jobs_completed']}; "
                 f"workers -c {s['workers']}, web workers {s['web_workers']}, clients {s['concurrency']}, "
                 f"database {s['database']}")
    missed = [t for t in result["targets"] if t["met"] is False]
    lines.append("targets: all met" if not missed else "targets missed: " + "; ".join(
        f"{t['key']}={t['value']} (want {t['target']})" for t in missed))
    lines.extend(f"note: {n}" for n in result["notes"])
    return "\n".join(lines)


def plot(samples: dict[str, list[float]], path: str) -> None:
    """A PNG of the latency distributions (needs matplotlib: pip install 'genline[bench]')."""
    # lazy: optional genline[bench] (matplotlib, heavy, and only for --plot); Agg before pyplot
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: optional genline[bench]
    series = {name: [v * 1000 for v in values] for name, values in samples.items() if values}
    fig, ax = plt.subplots(figsize=(9, 5))
    ax.boxplot(list(series.values()), vert=False, showfliers=True)
    ax.set_yticks(range(1, len(series) + 1), list(series.keys()))
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_title("genline bench: latency distributions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
