"""One journal batch answers, for each occurrence, whether it is new: whatever its size
(cut into several INSERTs), with repeats of earlier batches and repeats inside itself."""

from __future__ import annotations

from remediator.models import Occurrence
from remediator.state.store import StateStore


def occ(i: int, status: str = "firing") -> Occurrence:
    return Occurrence(
        f"{i:016x}", "2026-11-28T00:09:04.123Z", status, "Batch", {"alertname": "Batch"},
        {"i": str(i)}, "0001-01-01T00:00:00Z", "", "{}", 1.0, pending=i % 2 == 0,
    )  # fmt: skip


async def test_large_batches_with_repeats_answer_new_or_repeat_per_occurrence(state_url):
    store = await StateStore.open(state_url)
    try:
        first = [occ(i) for i in range(700)]  # past the largest INSERT on both backends
        assert await store.append_occurrences(first) == [True] * 700
        again = [occ(i) for i in range(650, 1050)]  # 50 repeats, then 350 new
        repeated_inside = [occ(2000), occ(2000, "resolved"), occ(2000)]
        got = await store.append_occurrences(again + repeated_inside)
        assert got == [False] * 50 + [True] * 350 + [True, True, False]
        assert await store.append_occurrences([occ(5), occ(2000)]) == [False, False]
        rows = await store.list_occurrences(10_000)
        assert len(rows) == 1052
        by_key = {(r["fingerprint"], r["status"]): r for r in rows}
        assert by_key[(f"{3:016x}", "firing")]["state"] == "done"
        assert by_key[(f"{4:016x}", "firing")]["state"] == "pending"
        assert by_key[(f"{2000:016x}", "resolved")]["annotations"] == {"i": "2000"}
    finally:
        await store.close()
