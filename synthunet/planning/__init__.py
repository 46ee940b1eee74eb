"""Experiment planning: from a dataset fingerprint to plans.json (memory and time model)."""
from synthunet.planning.experiment import plan_experiment, plans_for_fingerprint
from synthunet.planning.planner import CONFIGURATIONS, DEFAULT_PLANS_NAME, plan_configurations

__all__ = ["CONFIGURATIONS", "DEFAULT_PLANS_NAME", "plan_configurations", "plan_experiment", "plans_for_fingerprint"]
