"""openhands-memguard: guard OpenHands condensers with MemRM.

`guard_agent(agent, guard)` wraps the agent's condenser in a `MemGuardCondenser`: every
`Condensation` it proposes is reviewed (the agent's LLM probed on the full and the condensed
view, MemRM scoring the difference) and committed, replaced by a safer fallback, or vetoed.
"""

from openhands_memguard.condenser import MemGuardCondenser, guard_agent
from openhands_memguard.fallbacks import CondenserStrategy, strategy_name
from openhands_memguard.probe import AgentProbe
from openhands_memguard.views import SHELL_TOOLS, GuardedMessageEvent, GuardView, message_to_dict

__all__ = [
    "SHELL_TOOLS",
    "AgentProbe",
    "CondenserStrategy",
    "GuardView",
    "GuardedMessageEvent",
    "MemGuardCondenser",
    "guard_agent",
    "message_to_dict",
    "strategy_name",
]
