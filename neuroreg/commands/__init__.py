"""Subcommands of the ``neuroreg`` CLI that are not owned by a room (score, evaluate)."""
