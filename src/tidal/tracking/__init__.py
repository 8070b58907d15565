"""Experiment tracking: experiments, runs, params, metrics, tags, artifacts, system metrics and
cost."""
