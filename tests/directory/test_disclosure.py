"""Disclosure control rules, on tables built by hand (directory/stats.py feeds them from SQL)."""

from collections import Counter

from directory import disclosure


def test_the_noise_is_small_symmetric_and_centred() -> None:
    counts = Counter(disclosure.NOISE)
    assert set(counts) == {-2, -1, 0, 1, 2}
    assert counts[-2] == counts[2]
    assert counts[-1] == counts[1]
    assert sum(disclosure.NOISE) == 0


def test_a_count_moves_by_its_key_only() -> None:
    assert disclosure.perturb(0, 123, 0) == 0  # nothing to hide
    values = {disclosure.perturb(20, key, 0) for key in range(256)}
    assert values == {18, 19, 20, 21, 22}
    assert disclosure.perturb(20, 77, 3) == disclosure.perturb(20, 77, 3)  # same handoffs, same figure
    assert disclosure.perturb(20, 77 + 256, 3) == disclosure.perturb(20, 77, 3)
    # Two measures of one cell counting the same handoffs do not share their noise.
    assert any(disclosure.perturb(20, key, 0) != disclosure.perturb(20, key, 1) for key in range(256))


def _cell(month: str, status: str, cases: int, **counts: int) -> dict[str, object]:
    return {"month": month, "status": status, "cases": cases, **counts}


def test_a_lone_suppressed_cell_takes_the_smallest_non_zero_neighbour() -> None:
    table = [
        _cell("01", "accepted", 30),
        _cell("01", "declined", 3),
        _cell("01", "completed", 12),
        _cell("02", "accepted", 25),
        _cell("02", "declined", 15),
        _cell("02", "completed", 40),
    ]
    hidden, _ = disclosure.protect(table, ["month", "status"], k=10, counts=(), reasons={})
    # (01, declined) is under k; its month line takes (01, completed), its status line (02, declined),
    # and then the completed line needs a second cell too: no line is left with a lone hidden cell.
    assert ("01", "declined") in hidden
    for axis in (0, 1):
        lines: dict[str, int] = Counter(key[1 - axis] for key in hidden)
        assert all(n != 1 for n in lines.values())


def test_cells_without_cases_hide_nothing_and_count_nothing() -> None:
    table = [_cell("01", "accepted", 30), _cell("01", "declined", 0), _cell("01", "completed", 12)]
    hidden, _ = disclosure.protect(table, ["month", "status"], k=10, counts=(), reasons={})
    assert hidden == set()


def test_a_lone_masked_reason_takes_another_reason_with_it() -> None:
    reasons = {"declined": ["a", "b", "c", "d"]}
    counts = ("declined", "a", "b", "c", "d")
    two_small = _cell("01", "declined", 30, declined=20, a=15, b=3, c=2, d=0)
    _, masked = disclosure.protect([two_small], ["month", "status"], k=10, counts=counts, reasons=reasons)
    assert masked[("01", "declined")] == {"b", "c"}  # neither is the difference of published figures
    one_small = _cell("01", "declined", 30, declined=20, a=17, b=3, c=0, d=0)
    _, masked = disclosure.protect([one_small], ["month", "status"], k=10, counts=counts, reasons=reasons)
    # The 3 alone would be 20 - 17: the 17 goes too (rather than a zero, which is often known elsewhere).
    assert masked[("01", "declined")] == {"a", "b"}
