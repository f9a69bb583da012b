"""Statistical disclosure control: what a statistic may say about very few children.

Pure functions over tables already aggregated by directory/stats.py, so that every rule can be tested
without a database. The guiding rule (DESIGN.md §3): a statistic is blind to one child — the answer is
the same whether or not one more child exists in a group under k. Three mechanisms, each for what the
others cannot do:

- Suppression. Tables are complete: every combination of the requested dimensions' values is a cell,
  whether or not anything happened there, so the set of cells depends on the query alone. A cell
  counting fewer than k distinct cases — none at all included — shows no figure: zero and "a few" look
  the same, or the difference between them would point at a child. Along every line of the table
  (cells that differ in one dimension) a lone suppressed cell takes the smallest published one with it,
  so that no line total gives it away. Counts inside a published cell (declines, runaways, overdue
  handoffs…) under k, zero included, are masked the same way, and declines by reason form a line whose
  total is the declines. Which cells are hidden depends only on which groups are under k and on the
  values of the groups of k or more, never on how many children a small group holds.
- Perturbation (the cell-key method of statistical offices). Suppression within one table cannot stop
  differencing across tables: two periods, two groupings, a filter. So every published count carries
  a small noise, from -2 to +2, that depends only on which handoffs it counts: each handoff has a fixed
  random byte (the last byte of its random UUID), a count's key is the sum of its handoffs' bytes, and
  the noise is read from a fixed table at that key. The same handoffs always get the same noise, so
  asking again averages nothing out; two queries that differ by a few children differ by those
  children plus two independent noises, so a difference no longer gives their exact number. After the
  noise, a cell's counts are brought back within their logical bounds (`Bound`: never more distinct
  cases than handoffs, parts within their whole), from published figures only.
- Atoms, in directory/stats.py: (collectivité, month, kind) groups under k cases count nowhere.

What remains: a caller who builds many different differences around the same few children can
average their noises away. That takes dozens of queries against one collectivité; statistics queries
are few, and each is journalled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Noise by key (mod 256): symmetric, 40 % zero, never more than 2 either way.
NOISE: tuple[int, ...] = (-2,) * 26 + (-1,) * 51 + (0,) * 102 + (1,) * 51 + (2,) * 26
assert len(NOISE) == 256

Key = tuple[Any, ...]


def perturb(count: int, key: int, salt: int) -> int:
    """A published count: zero stays zero (nothing to hide), anything else moves by the noise at its key.
    `salt` separates the measures of one cell, whose keys often sum the same handoffs."""
    if not count:
        return 0
    return max(1, count + NOISE[(key + 37 * salt) % 256])


@dataclass(frozen=True)
class Bound:
    """A logical constraint between the counts of one cell: the published `parts` never add up to more
    than the published `whole` (so none exceeds it); with `exhaustive` (the parts partition the whole)
    they add up to exactly the whole when every part is published."""

    whole: str
    parts: tuple[str, ...]
    exhaustive: bool = False


def perturbed(
    values: Mapping[str, int],
    keys: Mapping[str, int],
    salts: Mapping[str, int],
    *,
    masked: Iterable[str] = (),
    bounds: Sequence[Bound] = (),
) -> dict[str, int | None]:
    """The published counts of one cell: each perturbed by its key (None when masked), then fitted to
    `bounds` in order — a whole is final before its parts are fitted to it, so list outer bounds first.

    Fitting reads published figures only (never a masked count, never a true one), moves the fewest
    units and is deterministic: it cannot tell more than the perturbed figures already do."""
    hidden = set(masked)
    out: dict[str, int | None] = {
        name: None if name in hidden else perturb(int(values[name]), int(keys[name]), salts[name]) for name in values
    }
    for bound in bounds:
        whole = out[bound.whole]
        if whole is None:
            continue
        shown = {part: value for part in bound.parts if (value := out[part]) is not None}
        out.update(fit(shown, whole, exact=bound.exhaustive and len(shown) == len(bound.parts)))
    return out


def fit(parts: Mapping[str, int], whole: int, *, exact: bool = False) -> dict[str, int]:
    """`parts` moved by single units, largest first (then by name), until they add up to at most `whole`
    (exactly `whole` when `exact`); no part goes below zero."""
    fitted = dict(parts)
    names = sorted(fitted, key=lambda name: (-fitted[name], name))
    if not names:
        return fitted
    turn = 0
    while sum(fitted.values()) > whole:
        name = names[turn % len(names)]
        if fitted[name] > 0:
            fitted[name] -= 1
        turn += 1
    while exact and sum(fitted.values()) < whole:
        fitted[names[turn % len(names)]] += 1
        turn += 1
    return fitted


def protect(
    table: list[dict[str, Any]], dims: list[str], *, k: int, counts: Iterable[str], reasons: Mapping[str, list[str]]
) -> tuple[set[Key], defaultdict[Key, set[str]]]:
    """The cells to suppress, and per published cell the counts to mask.

    `table` holds one row per cell — every cell of the table, empty ones included — with its dimensions,
    `cases` and each of `counts` (true values); `reasons` maps a count to the counts that are its parts
    (declines → declines by reason). A cell under k cases, or a count under k, is hidden whether it is
    zero or not: both must look the same."""
    cells = {tuple(c[d] for d in dims): c for c in table}
    cases = {key: int(cell["cases"]) for key, cell in cells.items()}
    hidden = complete({key for key, n in cases.items() if n < k}, cases, len(dims))
    masked: defaultdict[Key, set[str]] = defaultdict(set)
    for name in counts:
        values = {key: int(cell[name]) for key, cell in cells.items()}
        small = {key for key, n in values.items() if n < k}
        for key in complete(small | hidden, values, len(dims)) - hidden:
            masked[key].add(name)
    for key, cell in cells.items():
        if key not in hidden:
            for total, parts in reasons.items():
                _complete_parts(masked[key], cell, total, parts)
    return hidden, masked


def complete(hidden: set[Key], values: Mapping[Key, int], axes: int) -> set[Key]:
    """Complementary suppression: along every line of the table, a lone hidden value takes the smallest
    published one with it, until no line has exactly one. Deterministic, so the same table always hides
    the same values."""
    hidden = set(hidden)
    lines: list[list[Key]] = []
    for axis in range(axes):
        by_line: defaultdict[Key, list[Key]] = defaultdict(list)
        for key in values:
            by_line[key[:axis] + key[axis + 1 :]].append(key)
        lines.extend(members for members in by_line.values() if len(members) > 1)
    changed = True
    while changed:
        changed = False
        for members in lines:
            if sum(key in hidden for key in members) == 1:
                hidden.add(_smallest([key for key in members if key not in hidden], values))
                changed = True
    return hidden


def _complete_parts(masked: set[str], cell: Mapping[str, Any], total: str, parts: list[str]) -> None:
    """Inside one cell: a published total with exactly one masked part takes a second part with it."""
    if total in masked or sum(part in masked for part in parts) != 1:
        return
    values = {(part,): int(cell[part]) for part in parts if part not in masked}
    masked.add(_smallest(list(values), values)[0])


def _smallest(keys: list[Key], values: Mapping[Key, int]) -> Key:
    """The smallest value's key (ties: the first in a fixed order)."""
    return min(keys, key=lambda key: (values[key], repr(key)))
