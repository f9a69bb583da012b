"""Commune events of INSEE's Code officiel géographique (COG), and the remapping of stored commune codes.

The communes change every 1 January (and now and then mid-year): communes nouvelles absorb others, a
commune is re-established, a code changes with its département or its chef-lieu. Maillage stores commune
codes (locations, organisation seats, service areas), so when the territories are refreshed to a newer
COG every stored code that no longer names a commune must move to the commune that now holds its
territory, or be put before a person when the events do not say which one. A guessed commune would send
a child to the wrong CRIP, so nothing here guesses: a split is reported, never settled.

Source: INSEE, COG, "Événements sur les communes" (`v_mvt_commune_AAAA.csv`, Licence Ouverte 2.0),
UTF-8, comma separated, one row per (before, after) pair of an event, with the columns
`MOD,DATE_EFF,TYPECOM_AV,COM_AV,TNCC_AV,NCC_AV,NCCENR_AV,LIBELLE_AV,TYPECOM_AP,COM_AP,TNCC_AP,NCC_AP,
NCCENR_AP,LIBELLE_AP` and DATE_EFF as AAAA-MM-JJ. One event spans several rows: a commune nouvelle
has, for each former commune, a COM → COM row to the new commune and a COM → COMD row to the commune
déléguée it becomes; the chef-lieu keeps its code through a COM → COM row to itself.

The remapping reads the rows by their shape (types and codes), not by MOD, which only labels the report:
a commune's successor is the COM "after" side of the rows that start from it as a COM.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from .errors import GeoError

COMMUNE = "COM"  # a commune of full exercise; COMA, COMD and ARM are parts of one

# INSEE's labels of the MOD column (type d'événement de communes).
EVENT_LABELS: Mapping[int, str] = {
    10: "changement de nom",
    20: "création",
    21: "rétablissement",
    30: "suppression",
    31: "fusion simple",
    32: "création de commune nouvelle",
    33: "fusion association",
    34: "transformation de fusion association en fusion simple",
    35: "suppression de commune déléguée",
    41: "changement de code dû à un changement de département",
    50: "changement de code dû à un transfert de chef-lieu",
    70: "transformation de commune associée en commune déléguée",
    71: "rétablissement de commune déléguée",
    72: "création de commune déléguée",
}

_TYPES = frozenset({"COM", "COMA", "COMD", "ARM"})
_REQUIRED = ("MOD", "DATE_EFF", "TYPECOM_AV", "COM_AV", "TYPECOM_AP", "COM_AP", "LIBELLE_AP")
# Five digits, or 2A/2B in Corsica. A four-digit code is the usual damage of a spreadsheet that dropped
# the leading zero (01033 → 1033): refuse it rather than remap a code that names nothing.
_COMMUNE_CODE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class InvalidEventFile(GeoError):
    code = "invalid_event_file"


@dataclass(frozen=True)
class CommuneEvent:
    """One row of the file: one (before, after) pair of an event."""

    mod: int
    effective: date
    before_type: str
    before_code: str
    after_type: str
    after_code: str
    after_name: str


@dataclass(frozen=True)
class Remap:
    """Where a stored code goes. `new_code` is None when the events name no single current commune;
    `via` lists the (MOD, date) of the events that moved the code; `reason` is for the report."""

    old_code: str
    new_code: str | None
    via: tuple[tuple[int, date], ...]
    reason: str


def parse_events(lines: Iterable[str]) -> list[CommuneEvent]:
    """Rows of a mvtcommune file, in file order. Accepts a UTF-8 byte-order mark, `,` or `;` as
    separator (a re-saved file often has `;`), quoted fields and header names in any case."""
    rows = iter(lines)
    first = next(rows, None)
    if first is None:
        raise InvalidEventFile("empty file: no header line")
    first = first.removeprefix("\ufeff")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(itertools.chain([first], rows), delimiter=delimiter)
    header = [name.strip().upper() for name in next(reader)]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise InvalidEventFile(f"missing columns {', '.join(missing)} in header {','.join(header)}")
    column = {name: position for position, name in enumerate(header)}

    events: list[CommuneEvent] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        if len(row) != len(header):
            raise InvalidEventFile(f"line {line}: {len(row)} fields, the header has {len(header)}")
        cells = {name: row[position].strip() for name, position in column.items()}
        events.append(
            CommuneEvent(
                mod=_mod(cells["MOD"], line),
                effective=_date(cells["DATE_EFF"], line),
                before_type=_type(cells["TYPECOM_AV"], line),
                before_code=_code(cells["COM_AV"], line),
                after_type=_type(cells["TYPECOM_AP"], line),
                after_code=_code(cells["COM_AP"], line),
                after_name=cells["LIBELLE_AP"],
            )
        )
    return events


def _mod(text: str, line: int) -> int:
    if not text.isdigit():
        raise InvalidEventFile(f"line {line}: MOD {text!r} is not a number")
    return int(text)


def _date(text: str, line: int) -> date:
    if not _ISO_DATE.match(text):
        raise InvalidEventFile(f"line {line}: DATE_EFF {text!r} is not AAAA-MM-JJ")
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise InvalidEventFile(f"line {line}: DATE_EFF {text!r}: {error}") from None


def _type(text: str, line: int) -> str:
    if text not in _TYPES:
        raise InvalidEventFile(f"line {line}: commune type {text!r} is not one of {', '.join(sorted(_TYPES))}")
    return text


def _code(text: str, line: int) -> str:
    if not _COMMUNE_CODE.match(text):
        raise InvalidEventFile(f"line {line}: {text!r} is not a commune code")
    return text


def remap_table(
    events: Iterable[CommuneEvent], *, current_codes: Collection[str], since: date | None = None
) -> dict[str, Remap]:
    """For each code that appears as a commune (COM) before an event and is not in `current_codes`
    (the COM codes of the target COG), the current commune it became.

    `since` is the date of the COG the stored codes were checked against: its own events are already
    in it, so only events effective strictly after it are read.

    Chains are followed in date order (merged in 2019, merged again in 2024), code changes included,
    and several events of one day one after the other (absorbed, then the absorbing commune changes
    département). A commune that kept its code through an event (a renamed commune, the chef-lieu of a
    commune nouvelle, the source of a rétablissement) goes on as itself; rows to a COMD, COMA or ARM
    never name a successor. When the rows out of a commune lead to several current communes the answer
    is None, "ambiguous"; when they lead to none, None, "no successor".
    """
    current = frozenset(current_codes)
    relevant = [event for event in events if since is None or event.effective > since]
    history = _History.of(relevant)
    stale = {event.before_code for event in relevant if event.before_type == COMMUNE} - current
    return {code: _remap(code, history, current) for code in sorted(stale)}


@dataclass(frozen=True)
class _Step:
    effective: date
    mod: int
    from_code: str
    to_codes: tuple[str, ...]


@dataclass(frozen=True)
class _History:
    # code → date → MOD → codes of the COM "after" rows of the rows that leave the code as a COM
    # (empty when the code only became a COMD or COMA that day).
    departures: Mapping[str, Mapping[date, Mapping[int, frozenset[str]]]]
    # code → last date it became a commune again from another code or type (a rétablissement).
    rebirth: Mapping[str, date]

    @classmethod
    def of(cls, events: Iterable[CommuneEvent]) -> _History:
        departures: defaultdict[str, defaultdict[date, defaultdict[int, set[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set))
        )
        rebirth: dict[str, date] = {}
        for event in events:
            if event.before_type == COMMUNE:
                successors = departures[event.before_code][event.effective][event.mod]
                if event.after_type == COMMUNE:
                    successors.add(event.after_code)
            same = event.before_type == COMMUNE and event.before_code == event.after_code
            if event.after_type == COMMUNE and not same:
                rebirth[event.after_code] = max(event.effective, rebirth.get(event.after_code, event.effective))
        return cls(
            departures={
                code: {day: {mod: frozenset(codes) for mod, codes in mods.items()} for day, mods in days.items()}
                for code, days in departures.items()
            },
            rebirth=rebirth,
        )


@dataclass(frozen=True)
class _Trail:
    reached: frozenset[str]  # current communes at the ends of the trail
    stranded: frozenset[str]  # codes where the trail ends without a current commune
    steps: frozenset[_Step]


def _follow(
    code: str,
    not_before: date | None,
    history: _History,
    current: frozenset[str],
    used: frozenset[tuple[str, date, int]],
) -> _Trail:
    if code in current:
        return _Trail(frozenset({code}), frozenset(), frozenset())
    # A code that became a commune again later (rétablissement) holds its old territory back: what
    # happened to it before its rebirth no longer says where that territory is.
    rebirth = history.rebirth.get(code)
    if rebirth is not None and (not_before is None or rebirth > not_before):
        not_before = rebirth
    days = history.departures.get(code, {})
    for day in sorted(days):
        if not_before is not None and day < not_before:
            continue
        groups = {mod: codes for mod, codes in days[day].items() if (code, day, mod) not in used}
        if not groups:
            continue
        used = used | {(code, day, mod) for mod in groups}
        # A commune that keeps its code goes on as itself (renamed, chef-lieu of a commune nouvelle,
        # source of a rétablissement); a move out of it the same day wins, since it left that day.
        moves = {mod: codes for mod, codes in groups.items() if codes and code not in codes}
        if not moves:
            continue
        steps = {_Step(day, mod, code, tuple(sorted(codes))) for mod, codes in moves.items()}
        trails = [_follow(target, day, history, current, used) for target in sorted(set().union(*moves.values()))]
        return _Trail(
            reached=frozenset().union(*(trail.reached for trail in trails)),
            stranded=frozenset().union(*(trail.stranded for trail in trails)),
            steps=frozenset(steps).union(*(trail.steps for trail in trails)),
        )
    return _Trail(frozenset(), frozenset({code}), frozenset())


def _remap(code: str, history: _History, current: frozenset[str]) -> Remap:
    trail = _follow(code, None, history, current, frozenset())
    steps = sorted(trail.steps, key=lambda step: (step.effective, step.mod, step.from_code))
    via = tuple(dict.fromkeys((step.mod, step.effective) for step in steps))
    if len(trail.reached) == 1 and not trail.stranded:
        (new_code,) = trail.reached
        return Remap(code, new_code, via, "; ".join(_describe(step) for step in steps))
    if len(trail.reached) + len(trail.stranded) > 1:
        names = sorted(trail.reached) + [f"{other} (not a current commune)" for other in sorted(trail.stranded)]
        return Remap(code, None, via, f"ambiguous: several successors {', '.join(names)}")
    if not steps:
        return Remap(code, None, via, "no successor")
    (end,) = trail.stranded
    return Remap(code, None, via, f"no successor: the events lead to {end}, which is not a current commune")


def _describe(step: _Step) -> str:
    label = EVENT_LABELS.get(step.mod, f"MOD {step.mod}")
    return f"{step.from_code} → {', '.join(step.to_codes)}: {label}, {step.effective.isoformat()}"
