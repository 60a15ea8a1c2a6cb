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
        first = [occ(i) for i in range(2100)]  # many SQLite pieces; Postgres: one JSON text
        assert await store.append_occurrences(first) == [True] * 2100
        again = [occ(i) for i in range(2050, 2450)]  # 50 repeats, then 350 new
        repeated_inside = [occ(5000), occ(5000, "resolved"), occ(5000)]
        got = await store.append_occurrences(again + repeated_inside)
        assert got == [False] * 50 + [True] * 350 + [True, True, False]
        assert await store.append_occurrences([occ(5), occ(5000)]) == [False, False]
        rows = await store.list_occurrences(10_000)
        assert len(rows) == 2452
        by_key = {(r["fingerprint"], r["status"]): r for r in rows}
        assert by_key[(f"{3:016x}", "firing")]["state"] == "done"
        assert by_key[(f"{4:016x}", "firing")]["state"] == "pending"
        assert by_key[(f"{5000:016x}", "resolved")]["annotations"] == {"i": "5000"}
    finally:
        await store.close()


async def test_every_field_comes_back_exactly_as_journaled(state_url):
    # Label text that JSON and SQL quoting both have opinions about, and a float
    # timestamp that must survive to the last bit (time to mitigation is measured
    # from it).
    awkward = {
        "alertname": "Quoting",
        "q": 'it\'s "quoted" \\ back\\slash',
        "lines": "one\ntwo\tthree",
        "unicode": "Zürich ✓ 東京 🚨",
        "json": '{"not": ["parsed"]}',
    }
    o = Occurrence(
        "f" * 16, "2026-11-28T00:09:04.123456789Z", "firing", "Quoting", awkward,
        {"summary": "ünïcode ✓"}, "2026-11-28T01:00:00Z", "http://prom/graph?g0.expr=up%3D%3D0",
        '{}:{alertname="Quoting"}', 1795824544.1234567, pending=False,
    )  # fmt: skip
    store = await StateStore.open(state_url)
    try:
        assert await store.append_occurrences([o]) == [True]
        [row] = await store.list_occurrences(10)
        assert row["labels"] == awkward
        assert row["annotations"] == {"summary": "ünïcode ✓"}
        assert row["starts_at"] == o.starts_at
        assert row["ends_at"] == o.ends_at
        assert row["generator_url"] == o.generator_url
        assert row["group_key"] == o.group_key
        assert row["received_at"] == o.received_at
        assert row["state"] == "done"
        assert row["processed_at"] == o.received_at
    finally:
        await store.close()
