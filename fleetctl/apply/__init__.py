"""Executing a plan: the host program (pure), the per-host runner, the whole-fleet apply."""
