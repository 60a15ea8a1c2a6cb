from __future__ import annotations

from tests.server.conftest import state_url

__all__ = ["state_url"]  # the same intake tests run on SQLite and Postgres
