"""The state store: journal, runs and steps, approvals, guards, outbox and flags, on SQLite or Postgres."""
