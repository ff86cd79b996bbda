"""From alert to action: the response policy and the decisions (and lifts) it gives for alerts.

Sits between ``alert`` and the sinks in the data flow; imports nothing from the runtime, lab or CLI.
"""

from detector.decide.decisions import Decision, DecisionBook, decision_id_for
from detector.decide.policy import ACTION_RANK, DEFAULT_POLICY, Policy, PolicyError, load_policy

__all__ = [
    "ACTION_RANK",
    "DEFAULT_POLICY",
    "Decision",
    "DecisionBook",
    "Policy",
    "PolicyError",
    "decision_id_for",
    "load_policy",
]
