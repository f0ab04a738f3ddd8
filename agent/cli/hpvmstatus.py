"""`hpvmstatus`: not built yet (see the project's issues)."""

from agent.cli.common import not_implemented

main = not_implemented("hpvmstatus")
