"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network), from a Jinja2
template with autoescape (templates/reports/report.html.j2)."""

from __future__ import annotations

from markupsafe import Markup

from orchestrator.analysis.kpi import KPI
from orchestrator.charts import empty_chart, histogram_chart, line_chart
from orchestrator.templating import render_html


def display(k: KPI) -> tuple[str | None, str]:
    """The value as shown and the unit it is shown in (a latency in ms says "ms", not "s")."""
    if k.value is None:
        return None, k.unit
    v = k.value
    if k.unit == "bytes":
        return f"{v / 2**20:,.1f}", "MiB"
    if k.unit == "ratio":
        return f"{v * 100:.2f}", "%"
    if k.unit == "s":
        return (f"{v:,.2f}", "s") if v >= 10 else (f"{v * 1000:,.1f}", "ms")
    return (f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 1000 else f"{v:,.4g}"), k.unit


def render_report(report: dict, series: dict) -> str:
    """report: report.json's content (with ``kpi_objects``); series: name -> [(label, points)], plus
    "latency" [(start, latency)] of OK requests and "latency_histogram" (low, high, counts)."""
    w0 = report["window"]["start"]
    values = {k.kpi: k.value for k in report["kpi_objects"]}

    def quantile_lines(name: str) -> list[tuple[float, str]]:
        return [(values[f"{name}_{q}"] * 1000, f"{q} {values[f'{name}_{q}'] * 1000:,.1f} ms")
                for q in ("p50", "p99") if values.get(f"{name}_{q}") is not None]
    # in milliseconds, as the KPI table shows them, with the p50 and p99 the table lists
    charts = [
        line_chart("Latency over time", [("", [(t - w0, v * 1000) for t, v in series["latency"]])],
                   "seconds into the measured window", "latency (ms)", scatter=True,
                   hlines=quantile_lines("latency")),
        line_chart("Throughput over time", [("ok requests/s", [(t - w0, v) for t, v in series["throughput"]])],
                   "seconds into the measured window", "requests/s"),
    ]
    if series.get("ttft"):
        charts.append(line_chart("Time to first token over time", [("", [(t - w0, v * 1000) for t, v in series["ttft"]])],
                                 "seconds into the measured window", "TTFT (ms)", scatter=True,
                                 hlines=quantile_lines("ttft")))
    if series.get("tpot"):   # each request's mean inter-token latency (its TPOT), when it came
        charts.append(line_chart("Inter-token latency over time (each request's TPOT)",
                                 [("", [(t - w0, v * 1000) for t, v in series["tpot"]])],
                                 "seconds into the measured window", "TPOT (ms)", scatter=True,
                                 hlines=quantile_lines("tpot")))
    lo, hi, counts = series["latency_histogram"]
    charts.append(histogram_chart("Latency distribution", lo * 1000, hi * 1000, counts, "latency (ms)"))
    for key, title, unit in (("cpu_utilisation", "CPU utilisation (node_exporter)", "%"),
                             ("gpu_utilisation", "GPU utilisation (DCGM / nvidia-smi exporter)", "%")):
        s = series.get(key) or []
        if any(points for _, points in s):
            charts.append(line_chart(title, [(lab, [(t - w0, v) for t, v in pts]) for lab, pts in s],
                                     "seconds into the measured window", unit))
        else:
            charts.append(empty_chart(title, "absent: no exporter reported this metric"))
    kpis = []
    for k in report["kpi_objects"]:
        text, unit = display(k)
        kpis.append({"kpi": k.kpi, "text": text, "unit": unit, "source": k.source, "note": k.note})
    # the table folds under the headline; rows a source did not report are behind a toggle of their own
    measured, absent = [k for k in kpis if k["text"] is not None], [k for k in kpis if k["text"] is None]
    # the charts are our own SVG, whose text svg.py escapes: safe to insert as markup
    return render_html("reports/report.html.j2", report=report, kpis=measured, absent=absent,
                       charts=[Markup(c) for c in charts])
