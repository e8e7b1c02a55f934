"""Draw deploy/observability/grafana-dashboard.json into one PNG, without Grafana.

    python deploy/observability/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --minutes 10 --out docs/img/dashboard.png

Reads the dashboard's panels (type, title, gridPos, unit, each target's PromQL and
legendFormat), asks a real Prometheus for every target (``/api/v1/query_range`` for
every panel; a stat panel shows its last value over a sparkline, as Grafana's default) and draws the
panels with matplotlib where their gridPos puts them. Grafana's ``$__rate_interval``,
``$__interval`` and ``$__range`` become ``--rate-interval``, the step and the range.
It is a rendering of the dashboard's own queries, not a Grafana screenshot: the PNG
says so in its title. Needs matplotlib (``pip install -e '.[bench]'``); no genline import.
"""
from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

DASHBOARD = Path(__file__).with_name("grafana-dashboard.json")
UNITS = {"reqps": "/s", "s": "s", "short": "", "percentunit": "%"}
COL_IN, ROW_IN = 0.95, 0.36  # inches per gridPos column (24 across) and per gridPos row (Grafana: 30 px)


def prometheus(url: str, path: str, params: dict) -> list:
    """The ``result`` of one Prometheus API call; raises with Prometheus's own error."""
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url.rstrip('/')}{path}?{query}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"{params.get('query')}: {body.get('error')}")
    return body["data"]["result"]


def expand(expr: str, rate_interval: str, step_s: int, range_s: int) -> str:
    return (expr.replace("$__rate_interval", rate_interval).replace("$__interval", f"{step_s}s")
            .replace("$__range", f"{range_s}s"))


def legend(fmt: str | None, metric: dict) -> str:
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m[1], ""), fmt)
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in labels.items()) or metric.get("__name__", "value")


def fetch(panel: dict, url: str, start: float, end: float, step_s: int, rate_interval: str) -> list[tuple]:
    """(legend, times, values) per series of every target of ``panel``."""
    series = []
    for target in panel.get("targets", []):
        expr = expand(target["expr"], rate_interval, step_s, int(end - start))
        for r in prometheus(url, "/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step_s}):
            times = [datetime.fromtimestamp(float(t), timezone.utc) for t, _ in r["values"]]
            values = [float(v) if v not in ("NaN", "+Inf", "-Inf") else float("nan") for _, v in r["values"]]
            series.append((legend(target.get("legendFormat"), r["metric"]), times, values))
    return series


def time_ticks(mdates, range_s: float, ticks: int):
    """A tick every whole 15 s, 30 s or n minutes, about ``ticks`` across the range."""
    every = range_s / ticks
    if every <= 15:
        return mdates.SecondLocator(bysecond=range(0, 60, 15))
    if every <= 30:
        return mdates.SecondLocator(bysecond=(0, 30))
    return mdates.MinuteLocator(interval=max(1, round(every / 60)))


def render(dashboard: dict, url: str, start: float, end: float, step_s: int, rate_interval: str, out: Path) -> dict:
    """Draw every panel into ``out``; returns {panel title: number of series drawn}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header_in = 0.9
    width, height = 24 * COL_IN, rows * ROW_IN + header_in
    fig = plt.figure(figsize=(width, height), dpi=100, facecolor="#111217")
    first, last = datetime.fromtimestamp(start, timezone.utc), datetime.fromtimestamp(end, timezone.utc)
    span = f"{first:%Y-%m-%d %H:%M}–{last:%H:%M} UTC"
    fig.text(0.01, 1 - 0.35 / height, f"{dashboard['title']} — dashboard {DASHBOARD.name}", color="white",
             fontsize=16, weight="bold", va="center")
    fig.text(0.01, 1 - 0.7 / height, "Rendered by deploy/observability/render_dashboard.py from the dashboard's own "
             f"panels and PromQL on a real Prometheus ({span}, step {step_s}s, $__rate_interval={rate_interval}); "
             "not a Grafana screenshot (Grafana is not installable here).", color="#aaaaaa", fontsize=10, va="center")
    drawn: dict[str, int] = {}
    for panel in panels:
        g = panel["gridPos"]
        left, top = g["x"] * COL_IN / width, 1 - (header_in + g["y"] * ROW_IN) / height
        w, h = g["w"] * COL_IN / width, g["h"] * ROW_IN / height
        if panel["type"] == "row":
            fig.text(left + 0.004, top - h / 2, panel["title"], color="white", fontsize=13, weight="bold", va="center")
            continue
        # The panel's frame, then its plot inside (room for the title, tick labels and the legend).
        fig.add_artist(plt.Rectangle((left + 0.002, top - h + 0.001), w - 0.004, h - 0.002, transform=fig.transFigure,
                                     facecolor="#181b1f", edgecolor="#2c3235", zorder=-10))
        fig.text(left + 0.008, top - 0.28 / height, panel["title"], color="#d8d9da", fontsize=10.5, weight="bold",
                 va="center")
        unit = UNITS.get(panel.get("fieldConfig", {}).get("defaults", {}).get("unit", ""), "")
        series = fetch(panel, url, start, end, step_s, rate_interval)
        drawn[panel["title"]] = len(series)
        rows_of_legend = -(-len(series) // max(1, g["w"] // 3))
        pad_top, pad_bottom = 0.5 / height, (0.45 + 0.2 * rows_of_legend) / height
        pad_left, pad_right = 0.6 / width, 0.15 / width
        ax = fig.add_axes((left + pad_left, top - h + pad_bottom, w - pad_left - pad_right, h - pad_top - pad_bottom))
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.grid(color="#2c3235", linewidth=0.6)
        if not series:
            ax.set_xticks([]), ax.set_yticks([])
            ax.text(0.5, 0.5, "No data", color="#9fa7b3", fontsize=12, ha="center", va="center", transform=ax.transAxes)
            continue
        if panel["type"] == "stat":  # Grafana's default stat: the last value over a sparkline of the range
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            for _name, times, values in series:
                ax.fill_between(times, values, color="#73bf69", alpha=0.15, linewidth=1, edgecolor="#73bf69")
            seen = [[x for x in v if x == x] or [float("nan")] for _, _, v in series]  # x == x: not NaN
            ax.set_ylim(bottom=0, top=max(max(v) for v in seen) * 1.6 or 1)
            text = "\n".join(f"{v[-1]:g}{unit}" + (f"  {one[0]}" if len(series) > 1 else "")
                             for v, one in zip(seen, series))
            ax.text(0.5, 0.55, text, color="#73bf69", fontsize=40, weight="bold", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        for name, times, values in series:
            ax.plot(times, values, linewidth=1.4, label=name)
        ax.set_xlim(first, last)
        ax.set_ylim(bottom=0)
        ticks = time_ticks(mdates, end - start, max(3, g["w"] // 2))
        ax.xaxis.set_major_locator(ticks)
        seconds = isinstance(ticks, mdates.SecondLocator)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if seconds else "%H:%M", tz=timezone.utc))
        ax.yaxis.set_major_formatter(lambda v, _pos, unit=unit: f"{v:.3g}{unit}")
        # The legend below the plot, as Grafana's "list, bottom".
        anchor = (left + 0.004, top - h + (0.1 + 0.2 * rows_of_legend) / height)
        ax.legend(loc="upper left", bbox_transform=fig.transFigure, bbox_to_anchor=anchor, ncol=max(1, g["w"] // 3),
                  fontsize=7.5, frameon=False, labelcolor="#d8d9da", handlelength=1.2, columnspacing=1.0)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)
    return drawn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--minutes", type=float, default=10, help="the range: this many minutes up to --end")
    parser.add_argument("--end", type=float, default=None, help="unix time of the range's end (default: now)")
    parser.add_argument("--step", type=int, default=5, help="seconds between points")
    parser.add_argument("--rate-interval", default="1m", help="what $__rate_interval becomes (Grafana: 4 scrapes)")
    parser.add_argument("--out", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args(argv)
    end = args.end or time.time()
    drawn = render(json.loads(args.dashboard.read_text()), args.prometheus, end - args.minutes * 60, end,
                   args.step, args.rate_interval, args.out)
    for title, count in drawn.items():
        print(f"{count:3d} series  {title}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
