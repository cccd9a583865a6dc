"""A/B experiments between adapter versions: definitions (stored with the registry), assignment
(sticky per user, per header or random) and statistics (per variant, in memory or shared)."""

from . import sequential
from .assignment import FALLBACK, Assignment, assign, sticky_key
from .definitions import CONCLUDED, RUNNING, STICKY_HELP, STOPPED, Experiment, Sticky, check_sticky, define
from .stats import ExperimentStats, Outcome

__all__ = [
    "CONCLUDED",
    "RUNNING",
    "STOPPED",
    "FALLBACK",
    "STICKY_HELP",
    "Assignment",
    "Experiment",
    "ExperimentStats",
    "Outcome",
    "Sticky",
    "assign",
    "check_sticky",
    "define",
    "sequential",
    "sticky_key",
]
