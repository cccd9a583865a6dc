"""A/B experiments between adapter versions: definitions (stored with the registry), assignment
(sticky per user) and statistics (in memory, per variant, with a significance test on feedback)."""

from .assignment import assign
from .definitions import Experiment, Sticky, define
from .stats import ExperimentStats, Outcome

__all__ = ["Experiment", "ExperimentStats", "Outcome", "Sticky", "assign", "define"]
