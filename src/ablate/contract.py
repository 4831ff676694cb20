"""The contract between a sweep, its runs and the report: what each run writes, under which names, with what status."""

from __future__ import annotations

# what every run writes in its folder, and what a sweep writes in its own (read by ablate-report)
SUMMARY, METRICS, SAMPLES, PLAN = "summary.json", "metrics.csv", "samples.txt", "sweep.json"
# a run's status is running, completed, diverged, failed or interrupted; a relaunched sweep skips
# FINISHED runs and resumes the others
FINISHED = ("completed", "diverged")
