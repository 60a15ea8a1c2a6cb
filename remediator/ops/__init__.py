"""Operator commands: where they find the state, how they reach it, what they print."""
