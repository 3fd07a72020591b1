"""Production feedback: windows, drift, realized performance and campaign uplift.

The modules here are pure functions over DataFrames and arrays (no store, no
I/O, no server): :mod:`.windows` (time or event-count windows, volume,
freshness), :mod:`.drift` and :mod:`.drift_table` (drift against the
snapshot's reference summaries), :mod:`.joins` and :mod:`.performance`
(late labels joined to predictions, quality per window) and :mod:`.uplift`
(outcome rate per arm, uplift with its confidence interval). Definitions
follow METRICS.md.
"""
