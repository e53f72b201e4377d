"""What the measurements mean, with no effects: request records, quantiles, KPIs and their definitions,
experiments (sweeps, limits, comparisons), the engine catalogue and charts. ``bench/`` (which runs
things) and ``reports/`` (which renders) both import it; it imports neither."""
