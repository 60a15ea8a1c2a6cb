"""The state store: journal, runs and steps, approvals, guards, outbox and flags.

One interface, two backends: SQLite (embedded default) and Postgres (several replicas).
"""
