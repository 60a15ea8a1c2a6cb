"""What the outbox needs of the state store: the page queue.

The outbox depends on this Protocol, not on ``StateStore``: any store with these
methods (and a backend for folding's transactions, ``state/folds.py``) serves.
"""

from __future__ import annotations

from typing import Protocol

from remediator.state.connection import Backend
from remediator.state.records import QueuedPage


class PageQueue(Protocol):
    @property
    def backend(self) -> Backend:
        """Folding (``state/folds.py``) runs its transactions on it."""
        ...

    async def claim_pages(self, owner: str, limit: int, lease: float) -> list[QueuedPage]:
        """Take up to ``limit`` due pages for ``lease`` seconds, oldest first."""
        ...

    async def page_sent(self, page_id: int) -> None: ...

    async def page_retry(self, page_id: int, at: float, error: str) -> None: ...

    async def page_failed(self, page_id: int, error: str) -> None: ...
