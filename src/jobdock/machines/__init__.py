"""Machines started for jobs and stopped after: pools, their providers and
the autoscaler (docs/machines.md)."""
