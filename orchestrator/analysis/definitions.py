"""What the KPIs mean, apart from the code that computes them (which needs numpy): a recipe
is parsed with these and no more."""

DEFAULT_PERCENTILES = (50, 90, 95, 99)
DEFINITIONS = {
    "ttft": "time to first token: from sending the request to the first streamed chunk",
    "tpot": "time per output token, per request: (latency - TTFT) / (output tokens - 1)",
    "itl": "inter-token latency: every gap between two streamed chunks",
    "goodput": "requests/s of the window that met every per-request SLO",
}
