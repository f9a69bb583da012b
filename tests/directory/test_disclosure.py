"""Disclosure control rules, on tables built by hand (directory/stats.py feeds them from SQL)."""

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from directory import disclosure, stats


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


def test_a_lone_suppressed_cell_takes_the_smallest_neighbour() -> None:
    table = [
        _cell("01", "accepted", 30),
        _cell("01", "declined", 3),
        _cell("01", "completed", 12),
        _cell("02", "accepted", 25),
        _cell("02", "declined", 15),
        _cell("02", "completed", 40),
    ]
    hidden, _ = disclosure.protect(table, ["month", "status"], k=10, counts=(), reasons={})
    # (01, declined) is under k: its status line takes (02, declined); then January's line takes its
    # smallest, (01, completed), and February's (02, accepted); then the completed and accepted lines
    # each need a second cell: no line is left with a lone hidden cell.
    assert hidden == {(month, status) for month in ("01", "02") for status in ("accepted", "declined", "completed")}


def test_an_empty_cell_is_hidden_like_a_small_one() -> None:
    """Zero and a few must look the same: the same cells hidden, in the same lines."""
    for declined in (0, 1, 9):
        table = [_cell("01", "accepted", 30), _cell("01", "declined", declined), _cell("01", "completed", 12)]
        hidden, _ = disclosure.protect(table, ["month", "status"], k=10, counts=(), reasons={})
        assert hidden == {("01", "declined"), ("01", "completed")}


def test_a_count_under_k_is_masked_zero_included() -> None:
    reasons = {"declined": ["a", "b", "c", "d"]}
    counts = ("declined", "a", "b", "c", "d")
    two_small = _cell("01", "declined", 30, declined=20, a=15, b=3, c=2, d=0)
    _, masked = disclosure.protect([two_small], ["month", "status"], k=10, counts=counts, reasons=reasons)
    assert masked[("01", "declined")] == {"b", "c", "d"}
    one_small = _cell("01", "declined", 30, declined=25, a=15, b=10, c=0, d=0)
    _, masked = disclosure.protect([one_small], ["month", "status"], k=10, counts=counts, reasons=reasons)
    assert masked[("01", "declined")] == {"c", "d"}


def test_a_lone_masked_reason_takes_another_reason_with_it() -> None:
    reasons = {"declined": ["a", "b", "c"]}
    counts = ("declined", "a", "b", "c")
    one_small = _cell("01", "declined", 40, declined=35, a=17, b=12, c=6)
    _, masked = disclosure.protect([one_small], ["month", "status"], k=10, counts=counts, reasons=reasons)
    # The 6 alone would be 35 - 17 - 12: the 12 goes too, the smaller of the two published.
    assert masked[("01", "declined")] == {"b", "c"}


def test_fit_moves_the_largest_parts_first_by_single_units() -> None:
    assert disclosure.fit({"cases": 23}, 21) == {"cases": 21}
    assert disclosure.fit({"cases": 20}, 21) == {"cases": 20}  # within its whole: untouched
    assert disclosure.fit({"a": 12, "b": 30, "c": 11}, 49) == {"a": 11, "b": 28, "c": 10}
    assert disclosure.fit({"a": 12, "b": 30, "c": 11}, 56, exact=True) == {"a": 13, "b": 31, "c": 12}
    assert disclosure.fit({"a": 12, "b": 30}, 56) == {"a": 12, "b": 30}  # not exact: a part may be hidden
    assert disclosure.fit({}, 3, exact=True) == {}


def test_published_counts_respect_the_bounds_of_a_cell() -> None:
    salts = {"handoffs": 0, "cases": 1, "a": 2, "b": 3}
    bounds = (disclosure.Bound("handoffs", ("cases",)), disclosure.Bound("handoffs", ("a", "b"), exhaustive=True))
    values = {"handoffs": 20, "cases": 20, "a": 10, "b": 10}
    # Key 0: handoffs 18 (noise -2), cases 19 (-1), a 9 (-1, at 74), b 10 (0, at 111).
    out = disclosure.perturbed(values, dict.fromkeys(values, 0), salts, bounds=bounds)
    assert out == {"handoffs": 18, "cases": 18, "a": 9, "b": 9}
    # A masked part is never fitted, nor its whole made exact.
    out = disclosure.perturbed(values, dict.fromkeys(values, 0), salts, masked={"a"}, bounds=bounds)
    assert out == {"handoffs": 18, "cases": 18, "a": None, "b": 10}


@st.composite
def _cells(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int]]:
    """A cell's true counts, consistent as the data model makes them, and random perturbation keys."""
    handoffs = draw(st.integers(10, 400))
    cases = draw(st.integers(min(10, handoffs), handoffs))
    declined = draw(st.integers(0, handoffs))
    accepted = draw(st.integers(0, handoffs - declined))
    failed = draw(st.integers(0, min(accepted, handoffs - declined)))
    reasons = [draw(st.integers(0, declined)) for _ in stats.DECLINE_REASONS[:-1]]
    while sum(reasons) > declined:
        reasons[reasons.index(max(reasons))] -= 1
    values = {
        "handoffs": handoffs,
        "cases": cases,
        "accepted": accepted,
        "declined": declined,
        "failed": failed,
        "overdue": draw(st.integers(0, handoffs)),
        "runaway_cases": draw(st.integers(0, cases)),
        **{f"declined_{r}": n for r, n in zip(stats.DECLINE_REASONS, [*reasons, declined - sum(reasons)], strict=True)},
    }
    keys = {name: draw(st.integers(0, 255 * values[name])) for name in values}
    return values, keys


@settings(max_examples=500, deadline=None)
@given(cell=_cells(), k=st.integers(5, 12), mask=st.sets(st.sampled_from(stats.COUNTS)))
def test_perturbed_cells_keep_their_logical_constraints(
    cell: tuple[dict[str, int], dict[str, int]], k: int, mask: set[str]
) -> None:
    values, keys = cell
    out: Any = disclosure.perturbed(values, keys, stats.SALTS, masked=mask, bounds=stats.BOUNDS)
    handoffs, cases = out["handoffs"], out["cases"]
    assert 1 <= cases <= handoffs
    assert abs(handoffs - values["handoffs"]) <= 2
    for name in ("accepted", "declined", "failed", "overdue"):
        assert out[name] is None or out[name] <= handoffs
    assert out["runaway_cases"] is None or out["runaway_cases"] <= cases
    assert (out["accepted"] or 0) + (out["declined"] or 0) <= handoffs
    assert (out["declined"] or 0) + (out["failed"] or 0) <= handoffs
    parts = [out[f"declined_{r}"] for r in stats.DECLINE_REASONS]
    if out["declined"] is not None:
        assert sum(p for p in parts if p is not None) <= out["declined"]
        if None not in parts:
            assert sum(parts) == out["declined"]
    assert all(p is None or p >= 0 for p in parts)
    # The same cell is always published the same way.
    assert disclosure.perturbed(values, keys, stats.SALTS, masked=mask, bounds=stats.BOUNDS) == out


@settings(max_examples=300, deadline=None)
@given(
    table=st.lists(st.integers(0, 40), min_size=12, max_size=12),
    where=st.integers(0, 11),
    extra=st.integers(1, 9),
)
def test_the_hidden_cells_do_not_depend_on_a_small_cell_s_count(table: list[int], where: int, extra: int) -> None:
    """A 3 × 4 table: giving a cell under k any other count under k hides the very same cells."""
    k = 10

    def hidden(counts: list[int]) -> set[tuple[Any, ...]]:
        cells = [{"row": i // 4, "column": i % 4, "cases": n} for i, n in enumerate(counts)]
        return disclosure.protect(cells, ["row", "column"], k=k, counts=(), reasons={})[0]

    small = [min(n, k - 1) if i == where else n for i, n in enumerate(table)]
    other = [(small[i] + extra) % k if i == where else n for i, n in enumerate(small)]
    assert hidden(small) == hidden(other)
