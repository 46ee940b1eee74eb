"""Experiment planning: from a dataset fingerprint to plans.json (memory and time model)."""
from synthunet.planning.experiment import plan_experiment, plans_for_fingerprint
from synthunet.planning.planner import (CONFIGURATIONS, DEFAULT_PLANNER, PLANNERS, DefaultPlanner, get_planner,
                                        plan_configurations, register_planner)

__all__ = ["CONFIGURATIONS", "DEFAULT_PLANNER", "PLANNERS", "DefaultPlanner", "get_planner",
           "plan_configurations", "plan_experiment", "plans_for_fingerprint", "register_planner"]
