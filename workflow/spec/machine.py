"""A definition version ready to run: its spec and its compiled ``transitions`` machine.

Pure data, no database: the registry (:mod:`workflow.registry`) builds one per published
version and caches it.
"""

from __future__ import annotations

from dataclasses import dataclass

from transitions import Machine

from workflow.spec.model import WorkflowDefinition


@dataclass(frozen=True)
class Compiled:
    """A definition version ready to run: its spec, DB id and its state machine."""

    id: int
    version: int
    definition: WorkflowDefinition
    machine: Machine

    def dest(self, transition: str, state: str) -> str | None:
        """Where ``transition`` leads from ``state`` per the compiled machine, or None."""
        event = self.machine.events.get(transition)
        if event is None:
            return None
        candidates = event.transitions.get(state)
        return candidates[0].dest if candidates else None


def compile_machine(d: WorkflowDefinition) -> Machine:
    """The state machine of ``d``: its states and transitions, no automatic transitions."""
    return Machine(
        model=None,
        states=list(d.states),
        initial=d.initial_state,
        transitions=[
            {"trigger": t.name, "source": list(t.sources), "dest": t.dest}
            for t in d.transitions.values()
        ],
        auto_transitions=False,
        send_event=False,
    )
