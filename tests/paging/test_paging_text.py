"""Page text: summary, body sections, banners, links, truncation and size caps."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from paging_samples import make_content

from remediator.paging import text


def test_truncate_leaves_a_fitting_text_alone() -> None:
    assert text.truncate("hello", 5) == "hello"


def test_truncate_ends_with_an_ellipsis_within_the_byte_limit() -> None:
    assert text.truncate("abcdefghij", 8) == "abcde…"


def test_truncate_never_cuts_a_multibyte_character() -> None:
    # "€" is 3 bytes, "😀" is 4: a byte cut would land inside them.
    for s in ("€" * 10, "😀" * 10, "a€😀" * 10):
        for limit in range(3, 40):
            cut = text.truncate(s, limit)
            assert len(cut.encode()) <= limit
            assert s.startswith(cut.removesuffix("…"))


def test_truncate_keeps_combining_marks_with_their_letter() -> None:
    decomposed = unicodedata.normalize("NFD", "é") * 10  # e + U+0301, 3 bytes each
    cut = text.truncate(decomposed, 3 * 3 + 1 + 3)  # room for 3 pairs, 1 stray byte, "…"
    body = cut.removesuffix("…")
    assert body == unicodedata.normalize("NFD", "é") * 3


@given(st.text(), st.integers(min_value=3, max_value=200))
def test_truncate_always_fits_and_is_a_prefix(s: str, limit: int) -> None:
    cut = text.truncate(s, limit)
    assert len(cut.encode()) <= limit
    if len(s.encode()) <= limit:
        assert cut == s
    else:
        assert cut.endswith("…")
        assert s.startswith(cut[:-1])


def test_summary_is_one_line_within_1024() -> None:
    content = make_content(title="first line\nsecond\tline  " + "x" * 3000)
    summary = text.summary(content)
    assert "\n" not in summary and "\t" not in summary
    assert summary.startswith("first line second line x")
    assert len(summary.encode()) <= 1024 and summary.endswith("…")


def test_summary_marks_dry_run_and_paused() -> None:
    assert text.summary(make_content(mode="dry-run")).startswith("[DRY-RUN] [RB-01]")
    assert text.summary(make_content(mode="paused")).startswith("[PAUSED] [RB-01]")
    assert text.summary(make_content(mode="live")).startswith("[RB-01]")


def test_body_has_the_sections_in_order_with_items_as_given() -> None:
    body = text.body(make_content())
    lines = body.split("\n")
    for section in ("Done", "Skipped (why)", "Left for you", "Links"):
        assert section in lines
    assert [lines.index(s) for s in text.SECTIONS] == sorted(lines.index(s) for s in text.SECTIONS)
    left = lines.index("Left for you")
    assert lines[left + 1] == "- scale scheduler to 0: remediator approve 42"
    assert "- serve_last_good_pack: applied (marked PP-2025-10-20 fresh)" in lines
    assert "- rerun_build: skipped (providers unhealthy)" in lines


def test_body_lists_the_links_and_drops_an_empty_generator_url() -> None:
    content = make_content(
        links=(
            ("Runbook", "https://runbooks.example/RB-01"),
            ("Grafana", "https://grafana.example/d/remediator"),
            ("Alert", ""),
            ("Odd", "javascript:alert(1)"),
        )
    )
    lines = text.body(content).split("\n")
    links = lines[lines.index("Links") + 1 :]
    assert links == [
        "- Runbook: https://runbooks.example/RB-01",
        "- Grafana: https://grafana.example/d/remediator",
    ]


def test_empty_sections_say_none() -> None:
    lines = text.body(make_content(done=(), skipped=())).split("\n")
    assert lines[lines.index("Done") + 1] == "- (none)"
    assert lines[lines.index("Skipped (why)") + 1] == "- (none)"


def test_dry_run_body_starts_with_the_banner() -> None:
    body = text.body(make_content(mode="dry-run"))
    assert body.split("\n")[0] == "DRY-RUN: nothing was changed"


def test_paused_body_starts_with_the_kill_switch_banner() -> None:
    body = text.body(make_content(mode="paused"))
    assert body.split("\n")[0] == "PAUSED by kill switch: nothing was changed"


def test_live_body_has_no_banner() -> None:
    body = text.body(make_content(mode="live"))
    assert "nothing was changed" not in body
    assert body.startswith("[RB-01] PricingPackBuildSlow")


def test_long_lists_say_how_many_more() -> None:
    done = tuple(f"step {i}: applied" for i in range(60))
    lines = text.body(make_content(done=done), limit=100_000).split("\n")
    assert "- step 49: applied" in lines
    assert "- step 50: applied" not in lines
    assert "- ... and 10 more" in lines


def test_an_oversized_body_fits_and_keeps_every_section() -> None:
    big = "z" * 900
    content = make_content(
        done=tuple(f"d{i} {big}" for i in range(500)),
        skipped=tuple(f"s{i} {big}" for i in range(500)),
        left_for_human=("failover: remediator approve 7", *(f"l{i} {big}" for i in range(500))),
    )
    body = text.body(content, limit=15_000)
    assert len(body.encode()) <= 15_000
    lines = body.split("\n")
    assert lines[lines.index("Left for you") + 1] == "- failover: remediator approve 7"
    assert "Links" in lines
    assert any(line.startswith("- ... and ") and line.endswith(" more") for line in lines)


def test_a_runaway_item_is_cut_not_the_rest() -> None:
    content = make_content(done=("x" * 5000,))
    lines = text.body(content).split("\n")
    item = lines[lines.index("Done") + 1]
    assert item.endswith("…") and len(item.encode()) <= text.MAX_ITEM_BYTES + 2
    assert "- scale scheduler to 0: remediator approve 42" in lines


def test_fit_key_keeps_short_keys_and_shortens_long_ones_stably() -> None:
    assert text.fit_key("remediator/run-1", 255) == "remediator/run-1"
    long_a, long_b = "r/" + "a" * 300, "r/" + "a" * 299 + "b"
    assert len(text.fit_key(long_a, 255)) == 255
    assert text.fit_key(long_a, 255) == text.fit_key(long_a, 255)
    assert text.fit_key(long_a, 255) != text.fit_key(long_b, 255)
