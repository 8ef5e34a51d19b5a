"""AlgoPerf-exact scoring and comparison reports for experiment directories.

Modules:
  targets   workload targets (AlgoPerf table + JSON targets files), metric direction.
  logs      discovery and robust loading of AlgoPerf-layout run directories.
  hardware  hardware detection from meta_data, reference budgets, calibration.
  rules     benchmark version and tuning ruleset read from the logs.
  scoring   time-to-target, 4x cut, held-out rules, performance profile, score.
  score     `python -m analysis.score`: score a submission directory.
  calibrate `python -m analysis.calibrate`: budget for new hardware from baseline runs.
  plots     matplotlib (Agg) figures.
  report    `python -m analysis.report`: markdown + CSV leaderboard and PNG plots.
  tables    markdown tables for stdout and reports.
  fixtures  writes small synthetic AlgoPerf-layout run dirs (tests, demos).
"""
