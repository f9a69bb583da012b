"""Free text refuses identifying data (issue 9): the rule of directory/free_text.py, and every free-text
field of cases, handoffs, transitions and pathway events applying it."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from directory.free_text import identifying_kind, no_identifying_data
from directory.pathway_schemas import CaseCreate, CasePatch, HandoffCreate, PathwayEventIn, TransitionIn
from directory.schemas import ONE_LINE, PRINTABLE

PHONE, EMAIL, ADDRESS, BIRTH = "a phone number", "an e-mail address", "a street address", "a date of birth"

# The issue's table, as written there.
TABLE_REFUSED = [
    ("06 12 34 56 78", PHONE),
    ("0612345678", PHONE),
    ("+33 6 12 34 56 78", PHONE),
    ("+44 20 7946 0958", PHONE),
    ("tante.martin@example.org", EMAIL),
    ("12 rue des Lilas", ADDRESS),
    ("3 bis avenue Jean Jaurès", ADDRESS),
    ("lieu-dit 4 chemin du Moulin", ADDRESS),
    ("née le 03/04/2010", BIRTH),
    ("date de naissance : 2010-04-03", BIRTH),
    ("DDN 3/4/10", BIRTH),
]
TABLE_ACCEPTED = [
    "appeler le 119",
    "le 115 a été prévenu",
    "joignable après 18h",
    "rappeler le 12/11",
    "fugue depuis le 12/11/2026",
    "foyer de l'enfance, porte 3",
    "2 frères, 14 et 16 ans",
]

MORE_REFUSED = [
    # phones: other separators, prefixes, inside a sentence, two numbers in a row, full-width digits
    ("06.12.34.56.78", PHONE),
    ("06-12-34-56-78", PHONE),
    ("06 123 456 78", PHONE),
    ("0 800 05 41 41", PHONE),
    ("0033 6 12 34 56 78", PHONE),
    ("+33 (0)6 12 34 56 78", PHONE),
    ("+33612345678", PHONE),
    ("+1 (555) 123-4567", PHONE),
    ("appeler la tante au 01 23 45 67 89 après 18h", PHONE),
    ("tél:0612345678", PHONE),
    ("0612345678 0698765432", PHONE),
    ("０６１２３４５６７８", PHONE),
    # e-mails, including the usual disguises and letter case
    ("écrire à LEA.M@EXAMPLE.FR", EMAIL),
    ("tante.martin (at) example.org", EMAIL),
    ("tante[at]example.org", EMAIL),
    ("tante.martin＠example.org", EMAIL),
    # street addresses: commas, suffixes, ranges, abbreviations, case and accents
    ("12, rue des Lilas", ADDRESS),
    ("12bis rue Pasteur", ADDRESS),
    ("12B rue Pasteur", ADDRESS),
    ("12-14 avenue Foch", ADDRESS),
    ("12 à 14 boulevard Voltaire", ADDRESS),
    ("3 av. Jean Jaurès", ADDRESS),
    ("5 ALLEE DES PINS", ADDRESS),
    ("5 allee des pins", ADDRESS),
    ("40 route de lyon", ADDRESS),
    ("8 impasse", ADDRESS),
    ("hébergée chez sa tante, 9 quai de la Loire", ADDRESS),
    ("n°12 rue Pasteur", ADDRESS),
    ("1 place de la République", ADDRESS),
    ("1 place d'Italie", ADDRESS),
    ("12 bd Voltaire", ADDRESS),
    # dates of birth: markers with and without accents, inclusive writing, English, month names
    ("né(e) le 3/4/2010", BIRTH),
    ("Née le 3 avril 2010", BIRTH),
    ("NÉE LE 03/04/2010", BIRTH),
    ("née le 1er mai", BIRTH),
    ("née le 03/04", BIRTH),
    ("né en avril 2010", BIRTH),
    ("né·e le 03/04/2010", BIRTH),
    ("ne le 03/04/2010", BIRTH),
    ("née à Saint-Denis le 03/04/2010", BIRTH),
    ("D.D.N. 03.04.2010", BIRTH),
    ("date de naiss. 3/4/10", BIRTH),
    ("born on April 3, 2010", BIRTH),
    ("DOB: 2010-04-03", BIRTH),
]
MORE_ACCEPTED = [
    # service numbers and counts
    "appeler le 17 ou le 3919",
    "le 116 000 a été prévenu",
    "de 14 à 16 ans",
    "+2 frères",
    "délai 48h, 2e relance le 20/11",
    # a date that is no birth date, even next to a number
    "fugue le 3 avril 2026",
    "le 02/11/2026 14h",
    "il ne rentre pas depuis le 12/11/2026",  # "ne" (no accent) is a negation
    "ramené le 12/11/2026 au foyer",
    "née au Mali. Rappeler le 12/11/2026",  # another sentence
    "née au Mali, rappeler le 12/11",  # more than three words away
    "née en 2010",  # a year is no more than the age
    # street-type words that are everyday words
    "à la rue depuis 12 jours",
    "il reste 1 place au foyer",
    "3 places disponibles",
    "envoyé 1 mail à l'ASE",
    "2 cours de maths manqués",
    "1 passage aux urgences",
    "elle a volé 2 BD",
    "3 rues plus loin",
    # an at sign without an e-mail
    "rdv @ 18h",
]

REFUSED = TABLE_REFUSED + MORE_REFUSED
ACCEPTED = TABLE_ACCEPTED + MORE_ACCEPTED
HINT = "write no phone number, e-mail, street address or date of birth here"


def _ids(cases: list[Any]) -> list[str]:
    return [case[0] if isinstance(case, tuple) else case for case in cases]


def fragments(value: str) -> set[str]:
    """What of a value must not come back: the value, its digits, its digit groups and its words."""
    found = {
        value,
        *re.findall(r"\d{2,}", value),
        *(w for w in re.findall(r"[^\W\d_]{4,}", value) if w.lower() not in HINT),
    }
    digits = "".join(re.findall(r"\d", value))
    if len(digits) >= 4:
        found.add(digits)
    return found


# --- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "kind"), TABLE_REFUSED, ids=_ids(TABLE_REFUSED))
def test_the_issue_table_refused(value: str, kind: str) -> None:
    assert identifying_kind(value) == kind
    with pytest.raises(ValueError, match=f"^looks like {kind}: {HINT}$"):
        no_identifying_data(value)


@pytest.mark.parametrize("value", TABLE_ACCEPTED)
def test_the_issue_table_accepted(value: str) -> None:
    assert identifying_kind(value) is None
    assert no_identifying_data(value) == value


@pytest.mark.parametrize(("value", "kind"), MORE_REFUSED, ids=_ids(MORE_REFUSED))
def test_more_refused(value: str, kind: str) -> None:
    assert identifying_kind(value) == kind


@pytest.mark.parametrize("value", MORE_ACCEPTED)
def test_more_accepted(value: str) -> None:
    assert identifying_kind(value) is None


@pytest.mark.parametrize(("value", "kind"), REFUSED, ids=_ids(REFUSED))
def test_the_message_names_the_kind_never_the_value(value: str, kind: str) -> None:
    with pytest.raises(ValueError, match="looks like") as caught:
        no_identifying_data(value)
    message = str(caught.value)
    assert kind in message
    assert not {fragment for fragment in fragments(value) if fragment in message}


def test_long_text_is_quick() -> None:
    """No catastrophic backtracking on the longest text a field takes."""
    for text in ("née " * 125, "1 " * 250, "né le " + "a-b " * 120, "+3" + " 3" * 249, "x@" * 250, "12 place " * 55):
        started = time.perf_counter()
        identifying_kind(text[:500])
        assert time.perf_counter() - started < 0.5, text[:20]


# --- every free-text field of the pathway schemas ---------------------------------------------------

FIELDS: dict[str, tuple[type[BaseModel], str, dict[str, Any]]] = {
    "case.safe_contact": (
        CaseCreate,
        "safe_contact",
        {"age": 15, "residence_collectivite": "93D", "intake_channel": "phone", "caller": "parent"},
    ),
    "case_patch.safe_contact": (CasePatch, "safe_contact", {}),
    "handoff.reason": (
        HandoffCreate,
        "reason",
        {
            "case_id": str(uuid.uuid4()),
            "kind": "orientation",
            "beneficiary": "minor",
            "urgency": "within_24h",
            "legal_basis": "child_protection_duty",
        },
    ),
    "transition.reason": (TransitionIn, "reason", {"to": "declined", "reason_code": "other"}),
    "event.note": (PathwayEventIn, "note", {"kind": "note"}),
}
# Strings that are no free text: checked against a closed list elsewhere (directory/handoffs.py).
CLOSED_STRINGS = {(TransitionIn, "reason_code")}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize(("value", "kind"), REFUSED, ids=_ids(REFUSED))
def test_every_free_text_field_refuses(field: str, value: str, kind: str) -> None:
    model, name, base = FIELDS[field]
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**base, name: value})
    errors = caught.value.errors(include_input=False, include_context=False, include_url=False)
    assert [(e["loc"], e["type"]) for e in errors] == [((name,), "value_error")]
    assert kind in errors[0]["msg"]
    assert not {fragment for fragment in fragments(value) if fragment in errors[0]["msg"]}


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ACCEPTED)
def test_every_free_text_field_accepts(field: str, value: str) -> None:
    model, name, base = FIELDS[field]
    assert getattr(model.model_validate({**base, name: value}), name) == value


def _free_strings(model: type[BaseModel]) -> set[str]:
    """Fields whose schema is a plain string: no enum, pattern or format narrows it (the printable-text
    patterns only refuse control characters: they narrow nothing)."""
    names = set()
    for name, schema in model.model_json_schema()["properties"].items():
        for option in schema.get("anyOf", [schema]):
            keys = set(option) - ({"pattern"} if option.get("pattern") in (PRINTABLE, ONE_LINE) else set())
            if option.get("type") == "string" and not {"enum", "pattern", "format", "const"} & keys:
                names.add(name)
    return names


@pytest.mark.parametrize("model", [CaseCreate, CasePatch, HandoffCreate, TransitionIn, PathwayEventIn])
def test_no_free_text_field_escapes_the_rule(model: type[BaseModel]) -> None:
    """A free-text field added later to these schemas must apply the rule too (or be listed here)."""
    covered = {name for _, (m, name, _) in FIELDS.items() if m is model}
    assert _free_strings(model) - {name for m, name in CLOSED_STRINGS if m is model} == covered
