"""Framework-free decision logic (pure Python): schedules, CDAT, interval-median steps,
measurement amortization. Each component is a frozen config dataclass, a JSON-serialisable
NamedTuple state, and pure `init(config)` / `update(config, state, ...)` functions; the
framework code (`curvlr.pytorch`, `curvlr.jax`) only computes the reduced scalars they take.
"""
