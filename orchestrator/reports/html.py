"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

import math
from html import escape

from orchestrator.bench.kpi import KPI
from orchestrator.reports.svg import empty_chart, histogram_chart, line_chart


def _value(k: KPI) -> str:
    if k.value is None:
        return '<span class="absent">absent</span>'
    v = k.value
    if k.unit == "bytes":
        return f"{v / 2**20:,.1f} MiB"
    if k.unit == "ratio":
        return f"{v * 100:.2f} %"
    if k.unit == "s":
        return f"{v:,.2f} s" if v >= 10 else f"{v * 1000:,.1f} ms"
    return f"{v:,.4g}" if not float(v).is_integer() else f"{v:,.0f}"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1000px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.absent { color: #999; font-style: italic; } .meta { color: #555; font-size: 13px; }
.charts svg { display: block; margin: 12px 0; border: 1px solid #eee; }
"""


def render_report(report: dict, records: list[dict], series: dict) -> str:
    """report: report.json's content; records: measured requests; series: name -> [(label, points)]."""
    w0 = report["window"]["start"]
    ok = [r for r in records if r["ok"]]
    charts = [
        line_chart("Latency over time", [("", [(r["start"] - w0, r["latency_s"]) for r in ok][:20000])],
                   "seconds into the measured window", "latency (s)", scatter=True),
        line_chart("Throughput over time", [("ok requests/s", [(t - w0, v) for t, v in series["throughput"]])],
                   "seconds into the measured window", "requests/s"),
        histogram_chart("Latency distribution", [r["latency_s"] for r in ok], "latency (s)"),
    ]
    for key, title, unit in (("cpu_utilisation", "CPU utilisation (node_exporter)", "%"),
                             ("gpu_utilisation", "GPU utilisation (DCGM / nvidia-smi exporter)", "%")):
        s = series.get(key) or []
        if any(points for _, points in s):
            charts.append(line_chart(title, [(lab, [(t - w0, v) for t, v in pts]) for lab, pts in s],
                                     "seconds into the measured window", unit))
        else:
            charts.append(empty_chart(title, "absent: no exporter reported this metric"))
    for chart in report.get("extra_charts", []):
        charts.append(chart)
    rows = "".join(
        f"<tr><td>{escape(k.kpi)}</td><td class='num'>{_value(k)}</td><td>{escape(k.unit)}</td>"
        f"<td>{escape(k.source)}</td><td>{escape(k.note)}</td></tr>" for k in report["kpi_objects"])
    verdicts = "".join(f"<li>{escape(v)}</li>" for v in report.get("verdicts", []))
    errors = "".join(f"<li>{escape(e)}</li>" for e in report.get("errors", []))
    top_errors = "".join(f"<li><code>{escape(msg)}</code>: {n}</li>" for msg, n in report.get("top_errors", []))
    m = report["manifest"]
    status = "INTERRUPTED: partial results" if report.get("interrupted") else "complete"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Benchmark {escape(report['session'])}</title>
<style>{CSS}</style></head><body>
<h1>Benchmark {escape(report['benchmark'])}</h1>
<div class="meta">session <b>{escape(report['session'])}</b> · {status} · window {escape(report['window']['start_iso'])} to
{escape(report['window']['end_iso'])} ({report['window']['seconds']:.1f} s, warm-up excluded) ·
tool {escape(m['tool_version'])}</div>
{f'<h2>Verdicts</h2><ul>{verdicts}</ul>' if verdicts else ''}
<h2>KPIs</h2>
<table><tr><th>KPI</th><th>value</th><th>unit</th><th>source</th><th>note</th></tr>{rows}</table>
<p class="meta">Client KPIs are computed from every request of the measured window; percentiles interpolate
linearly between closest ranks. Prometheus KPIs are queried over the same window; "absent" means the source
reported nothing, never zero.</p>
{f'<h2>Errors</h2><ul>{top_errors}</ul>' if top_errors else ''}
{f'<h2>Problems during the session</h2><ul>{errors}</ul>' if errors else ''}
<h2>Charts</h2><div class="charts">{''.join(charts)}</div>
<h2>Jobs</h2>
<table><tr><th>role</th><th>service ID</th><th>SLURM job</th><th>nodes</th></tr>
{''.join(f"<tr><td>{escape(j['role'])}</td><td>{escape(j['service_id'])}</td><td>{escape(str(j['job_id']))}</td><td>{escape(j['nodes'])}</td></tr>" for j in m['jobs'])}
</table>
</body></html>
"""


def nan_to_none(v):
    return None if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else v
