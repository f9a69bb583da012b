"""Statistical disclosure control: what a statistic may say about very few children.

Pure functions over tables already aggregated by directory/stats.py, so that every rule can be tested
without a database. Three mechanisms, each for what the others cannot do:

- Suppression. A cell counting fewer than k distinct cases shows no figure; along every line of the
  table (cells that differ in one dimension) a lone suppressed cell takes the smallest published one
  with it, so that no line total gives it away. Counts inside a published cell (declines, runaways,
  overdue handoffs…) between 1 and k-1 are masked the same way, and declines by reason form a line
  whose total is the declines.
- Perturbation (the cell-key method of statistical offices). Suppression within one table cannot stop
  differencing across tables: two periods, two groupings, a filter. So every published count carries
  a small noise, from -2 to +2, that depends only on which handoffs it counts: each handoff has a fixed
  random byte (the last byte of its random UUID), a count's key is the sum of its handoffs' bytes, and
  the noise is read from a fixed table at that key. The same handoffs always get the same noise, so
  asking again averages nothing out; two queries that differ by a few children differ by those
  children plus two independent noises, so a difference no longer gives their exact number.
- Atoms, in directory/stats.py: (collectivité, month, kind) groups under k cases count nowhere.

What remains: a caller who builds many different differences around the same few children can
average their noises away. That takes dozens of queries against one collectivité; statistics queries
are few, and each is journalled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
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


def protect(
    table: list[dict[str, Any]], dims: list[str], *, k: int, counts: Iterable[str], reasons: Mapping[str, list[str]]
) -> tuple[set[Key], defaultdict[Key, set[str]]]:
    """The cells to suppress, and per published cell the counts to mask.

    `table` holds one row per cell with its dimensions, `cases` and each of `counts` (true values);
    `reasons` maps a count to the counts that are its parts (declines → declines by reason). Cells with
    no cases (made only of excluded atoms) count nothing, hide nothing and take no part in the lines."""
    present = {tuple(c[d] for d in dims): c for c in table if c["cases"]}
    cases = {key: cell["cases"] for key, cell in present.items()}
    hidden = complete({key for key, n in cases.items() if n < k}, cases, len(dims))
    masked: defaultdict[Key, set[str]] = defaultdict(set)
    for name in counts:
        values = {key: cell[name] for key, cell in present.items()}
        small = {key for key, n in values.items() if 0 < n < k}
        for key in complete(small | hidden, values, len(dims)) - hidden:
            masked[key].add(name)
    for key, cell in present.items():
        if key not in hidden:
            for total, parts in reasons.items():
                _complete_parts(masked[key], cell, total, parts)
    return hidden, masked


def complete(hidden: set[Key], values: dict[Key, int], axes: int) -> set[Key]:
    """Complementary suppression: along every line of the table, a lone hidden value takes the smallest
    published one with it (a non-zero one when there is one), until no line has exactly one.
    Deterministic, so the same table always hides the same values."""
    hidden = set(hidden)
    changed = True
    while changed:
        changed = False
        for axis in range(axes):
            lines: defaultdict[Key, list[Key]] = defaultdict(list)
            for key in values:
                lines[key[:axis] + key[axis + 1 :]].append(key)
            for members in lines.values():
                if len(members) > 1 and sum(key in hidden for key in members) == 1:
                    hidden.add(_smallest([key for key in members if key not in hidden], values))
                    changed = True
    return hidden


def _complete_parts(masked: set[str], cell: Mapping[str, Any], total: str, parts: list[str]) -> None:
    """Inside one cell: a published total with exactly one masked part takes a second part with it."""
    if total in masked or sum(part in masked for part in parts) != 1:
        return
    values = {(part,): cell[part] for part in parts if part not in masked}
    masked.add(_smallest(list(values), values)[0])


def _smallest(keys: list[Key], values: Mapping[Key, int]) -> Key:
    """The smallest non-zero value's key (a zero is often known from elsewhere), else the first zero."""
    return min(keys, key=lambda key: (values[key] == 0, values[key], repr(key)))
