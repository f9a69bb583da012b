"""The partner's workspaces in a real browser: "Nos services" (capacity, verification, closure, the
conflict of a stale write) and "Orientations reçues" (acknowledge, accept, decline with a reason, a move
made meanwhile by someone else).

Each test works on listings and handoffs of its own, made through the API beforehand (services without a
place or an area: no search of the other console tests can meet them), and checks every change in the
database itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect

from api.app import build_token_service
from api.settings import Settings
from directory.access import Role
from tests.console.conftest import ARTIFACTS, ConsoleServer, check_a11y, login, screenshot

PARIS = ZoneInfo("Europe/Paris")
# The cases of these tests live in Lozère: the console's statistics tests read the Seine-Saint-Denis.
CASE = {
    "age": 15,
    "gender": "female",
    "residence_collectivite": "48D",
    "intake_channel": "phone",
    "caller": "professional",
    "needs": ["emergency-shelter"],
    "do_not_contact_parents": True,
}


class Api:
    """The API as a specialist or the partner calls it, with tokens signed by the server's own key."""

    def __init__(self, server: ConsoleServer) -> None:
        self.server = server
        self._tokens = build_token_service(Settings(var_dir=server.var))
        self.client = httpx.Client(base_url=server.base_url, timeout=15)

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        org = self.server.partner_organisation if role == "partner" else None
        token = self._tokens.issue(subject=f"tests-{role}", role=Role(role), organisation_id=org)
        return {"Authorization": f"Bearer {token}", **extra}

    def call(self, method: str, path: str, role: str, *, expect_status: int = 200, **kwargs: Any) -> httpx.Response:
        headers = self.headers(role, **kwargs.pop("headers", {}))
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == expect_status, response.text
        return response


@pytest.fixture(scope="module")
def api(console_server: ConsoleServer) -> Iterator[Api]:
    client = Api(console_server)
    yield client
    client.client.close()


@pytest.fixture
def db(console_server: ConsoleServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(console_server.owner_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def new_service(api: Api) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Services of the partner's organisation, made through the API, archived afterwards."""
    made: list[str] = []

    def make(kind: str) -> dict[str, Any]:
        body = {
            "name": f"[Test console] {kind} {uuid.uuid4().hex[:6]}",
            "specialisms": ["emergency-shelter"],
            "schedule": {"mode": "always"},
            "channels": ["in_person"],
        }
        service = api.call("POST", "/v1/services", "partner", json=body, expect_status=201).json()
        made.append(service["id"])
        return {"id": service["id"], "name": body["name"]}

    yield make
    for service_id in made:
        api.call("DELETE", f"/v1/services/{service_id}", "partner", headers={"If-Match": "*"}, expect_status=204)


def _row(db: psycopg.Connection[Any], sql: str, *params: Any) -> tuple[Any, ...]:
    row = db.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def _capacity(db: psycopg.Connection[Any], service_id: str) -> tuple[Any, ...]:
    return _row(db, "SELECT capacity, capacity_places FROM service WHERE id = %s", service_id)


def _card(page: Page, service_id: str) -> Locator:
    return page.locator(f"#service-{service_id}")


def _open_listings(page: Page, name: str) -> None:
    login(page, "partenaire")
    expect(page.get_by_role("heading", level=1, name="Nos services")).to_be_visible()
    expect(page.get_by_role("heading", level=3, name=name)).to_be_visible()


# --- Nos services ---------------------------------------------------------------------------------


def test_partner_keeps_a_service_true(
    page: Page, api: Api, db: psycopg.Connection[Any], new_service: Callable[[str], dict[str, Any]]
) -> None:
    service = new_service("Foyer d’urgence")
    demo = [
        row[0]
        for row in db.execute(
            "SELECT name FROM service WHERE organisation_id = %s AND demo AND archived_at IS NULL ORDER BY name",
            (api.server.partner_organisation,),
        )
    ]
    _open_listings(page, service["name"])
    for name in demo:  # the organisation's other services are there too
        expect(page.get_by_role("heading", level=3, name=name)).to_be_visible()
    card = _card(page, service["id"])
    expect(card.get_by_role("group", name="Capacité")).to_be_visible()
    # A new listing was never verified: it is on the list of what to re-verify, with a way to it.
    freshness = page.locator("section.mx-freshness")
    expect(freshness.get_by_role("link", name=service["name"])).to_be_visible()
    check_a11y(page, "partner-services")
    screenshot(page, "partner-services")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / "readme-partner-services.png")  # the first screen, for the README
    freshness.get_by_role("link", name=service["name"]).click()
    expect(card.get_by_role("heading", level=3)).to_be_focused()

    # Full, in one click (from the keyboard); focus lands on the places, the button being gone.
    card.get_by_role("button", name=re.compile(r"^Marquer complet")).focus()
    page.keyboard.press("Enter")
    expect(card.get_by_role("status")).to_contain_text("Capacité enregistrée : Complet, 0 place libre")
    assert _capacity(db, service["id"]) == ("full", 0)
    expect(card.get_by_label("Places libres")).to_be_focused()
    expect(card.get_by_role("button", name=re.compile(r"^Marquer complet"))).to_have_count(0)

    # Three places, limited: typed, then Enter in the field sends the form.
    card.get_by_label("Places libres").fill("3")
    card.get_by_label("Situation").select_option("limited")
    card.get_by_label("Places libres").press("Enter")
    expect(card.get_by_role("status")).to_contain_text("Capacité enregistrée : Places limitées, 3 places libres")
    assert _capacity(db, service["id"]) == ("limited", 3)
    expect(card.get_by_role("button", name=re.compile(r"^Enregistrer la capacité"))).to_be_focused()

    # Verified: fresh again, and off the list of what to re-verify.
    before = datetime.now(UTC)
    card.get_by_role("button", name=re.compile(r"^Confirmer que cette fiche est à jour")).click()
    expect(card.get_by_role("status")).to_contain_text("Fiche confirmée à jour")
    (verified,) = _row(db, "SELECT last_verified_at FROM service WHERE id = %s", service["id"])
    assert before - timedelta(seconds=5) <= verified <= datetime.now(UTC)
    expect(freshness.get_by_role("link", name=service["name"])).to_have_count(0)

    # A closure: the form opens in place. One that would end before it starts is caught in the
    # browser, nothing sent, the field named, marked and focused, what was typed kept.
    tomorrow = datetime.now(PARIS).date() + timedelta(days=1)
    reopening = tomorrow + timedelta(days=7)
    toggle = card.get_by_role("button", name=re.compile(r"^Fermer temporairement"))
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(card.get_by_label("Fermé à partir du")).to_be_focused()
    card.get_by_label("Fermé à partir du").fill(tomorrow.isoformat())
    card.get_by_label("Réouverture le").fill(tomorrow.isoformat())
    card.get_by_label("Motif").fill("Travaux dans les locaux")
    card.get_by_role("button", name=re.compile(r"^Enregistrer la fermeture")).click()
    expect(card.get_by_role("alert")).to_contain_text("La réouverture doit venir après le début de la fermeture")
    expect(card.get_by_label("Réouverture le")).to_be_focused()
    expect(card.get_by_label("Réouverture le")).to_have_attribute("aria-invalid", "true")
    expect(card.get_by_label("Motif")).to_have_value("Travaux dans les locaux")
    assert _row(db, "SELECT status, closed_from FROM service WHERE id = %s", service["id"]) == ("active", None)

    # Closed from tomorrow to a week later, with a reason: the dates are midnights in Paris.
    card.get_by_label("Réouverture le").fill(reopening.isoformat())
    card.get_by_role("button", name=re.compile(r"^Enregistrer la fermeture")).click()
    expect(card.get_by_role("status")).to_contain_text("Fermeture enregistrée : Prévue à partir du")
    assert _row(
        db, "SELECT status, closed_from, closed_until, closure_message FROM service WHERE id = %s", service["id"]
    ) == (
        "temporarily_closed",
        datetime.combine(tomorrow, time(0), PARIS),
        datetime.combine(reopening, time(0), PARIS),
        "Travaux dans les locaux",
    )
    expect(card.get_by_role("button", name=re.compile(r"^Rouvrir maintenant"))).to_be_focused()
    # The capacity is untouched by the closure.
    assert _capacity(db, service["id"]) == ("limited", 3)

    # Reopened at once.
    card.get_by_role("button", name=re.compile(r"^Rouvrir maintenant")).click()
    expect(card.get_by_role("status")).to_contain_text("Service rouvert")
    assert _row(
        db, "SELECT status, closed_from, closed_until, closure_message FROM service WHERE id = %s", service["id"]
    ) == ("active", None, None, None)
    expect(card.get_by_role("button", name=re.compile(r"^Fermer temporairement"))).to_be_focused()


def test_a_stale_capacity_shows_what_changed_and_is_redone_on_the_current_version(
    new_page: Callable[[], Page], db: psycopg.Connection[Any], new_service: Callable[[str], dict[str, Any]]
) -> None:
    service = new_service("Équipe mobile")
    a, b = new_page(), new_page()
    _open_listings(a, service["name"])
    _open_listings(b, service["name"])
    card_a, card_b = _card(a, service["id"]), _card(b, service["id"])

    card_a.get_by_label("Places libres").fill("5")
    card_a.get_by_label("Situation").select_option("available")
    card_a.get_by_role("button", name=re.compile(r"^Enregistrer la capacité")).click()
    expect(card_a.get_by_role("status")).to_contain_text("Places disponibles, 5 places libres")
    assert _capacity(db, service["id"]) == ("available", 5)

    # B still shows the version before A's write: its write is refused, never applied over A's.
    card_b.get_by_label("Places libres").fill("2")
    card_b.get_by_label("Situation").select_option("limited")
    card_b.get_by_role("button", name=re.compile(r"^Enregistrer la capacité")).click()
    conflict = card_b.locator(".mx-conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_have_attribute("role", "alert")
    expect(conflict).to_be_focused()
    expect(conflict.get_by_role("heading")).to_have_text("Ce service a été modifié pendant que vous le consultiez")
    changes = conflict.get_by_role("table", name="Ce qui a changé depuis votre lecture")
    expect(changes.locator("tr[data-field=capacity] td")).to_have_text(["Non renseignée", "Places disponibles"])
    expect(changes.locator("tr[data-field=places] td")).to_have_text(["Non précisé", "5"])
    expect(conflict).to_contain_text("Votre modification : capacité « Places limitées », 2 places libres.")
    # The card itself now shows the current version (A's).
    expect(card_b.get_by_label("Places libres")).to_have_value("5")
    assert _capacity(db, service["id"]) == ("available", 5)
    check_a11y(b, "partner-conflict")
    screenshot(b, "partner-conflict")

    conflict.get_by_role("button", name="Appliquer ma modification à la version actuelle").click()
    expect(card_b.get_by_role("status")).to_contain_text("Capacité enregistrée : Places limitées, 2 places libres")
    expect(card_b.locator(".mx-conflict")).to_have_count(0)
    assert _capacity(db, service["id"]) == ("limited", 2)

    # A, now behind, may drop its own change instead: the database keeps B's.
    card_a.get_by_role("button", name=re.compile(r"^Marquer complet")).click()
    conflict_a = card_a.locator(".mx-conflict")
    expect(conflict_a.locator("tr[data-field=capacity] td")).to_have_text(["Places disponibles", "Places limitées"])
    conflict_a.get_by_role("button", name="Abandonner ma modification").click()
    expect(card_a.get_by_role("status")).to_contain_text("Modification abandonnée")
    assert _capacity(db, service["id"]) == ("limited", 2)


# --- Orientations reçues --------------------------------------------------------------------------


@pytest.fixture
def handoffs(api: Api) -> list[dict[str, Any]]:
    """Three orientations from the 119 to the partner's organisation, in one case, newest last."""
    case = api.call("POST", "/v1/cases", "specialist", json=CASE, expect_status=201).json()
    made = []
    for urgency, reason in (
        ("routine", "Accompagnement vers un foyer"),
        ("immediate", "Mise à l’abri ce soir"),
        ("within_24h", "Premier rendez-vous"),
    ):
        body = {
            "case_id": case["id"],
            "kind": "orientation",
            "to_organisation_id": str(api.server.partner_organisation),
            "beneficiary": "minor",
            "urgency": urgency,
            "legal_basis": "child_protection_duty",
            "reason": reason,
        }
        made.append(
            api.call(
                "POST",
                "/v1/handoffs",
                "specialist",
                json=body,
                expect_status=201,
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ).json()
        )
    return made


def _handoff(db: psycopg.Connection[Any], handoff_id: str) -> tuple[Any, ...]:
    return _row(
        db,
        "SELECT status, acknowledged_at IS NOT NULL, accepted_at IS NOT NULL, decline_reason"
        " FROM handoff WHERE id = %s",
        handoff_id,
    )


def test_partner_answers_its_inbox(
    page: Page, api: Api, db: psycopg.Connection[Any], handoffs: list[dict[str, Any]]
) -> None:
    first, second, third = handoffs
    login(page, "partenaire")
    page.get_by_role("navigation", name="Espaces de travail").get_by_role("button", name="Orientations reçues").click()
    expect(page.get_by_role("heading", level=1, name="Orientations reçues")).to_be_visible()
    cards = {h["id"]: page.locator(f"#handoff-{h['id']}") for h in handoffs}
    for card in cards.values():
        expect(card).to_be_visible()
    expect(cards[second["id"]]).to_contain_text("Urgence immédiate")
    expect(cards[second["id"]]).to_contain_text("Mise à l’abri ce soir")
    check_a11y(page, "partner-inbox")
    screenshot(page, "partner-inbox")

    # What the partner needs to know of the child: the contact precautions.
    one = cards[first["id"]]
    one.get_by_role("button", name=re.compile(r"^Ce qu’il faut savoir de l’enfant")).click()
    expect(one.locator(".mx-handoff-case")).to_contain_text("Ne pas contacter les parents.")
    expect(one.locator(".mx-handoff-case")).to_contain_text("15 ans")

    # Acknowledge, then accept; focus goes on to the next answer.
    one.get_by_role("button", name=re.compile(r"^Accuser réception")).click()
    expect(one.get_by_role("status")).to_contain_text("Réception accusée")
    assert _handoff(db, first["id"]) == ("acknowledged", True, False, None)
    expect(one.get_by_role("button", name=re.compile(r"^Accepter"))).to_be_focused()
    page.keyboard.press("Enter")
    expect(one.get_by_role("status")).to_contain_text("Orientation acceptée")
    assert _handoff(db, first["id"]) == ("accepted", True, True, None)
    expect(one.get_by_role("button", name=re.compile(r"^Commencer l’accompagnement"))).to_be_visible()

    # Declined with a reason code and a few words.
    two = cards[second["id"]]
    refuse = two.get_by_role("button", name=re.compile(r"^Refuser"))
    refuse.click()
    expect(two.get_by_role("button", name=re.compile(r"^Refuser"))).to_have_attribute("aria-expanded", "true")
    two.get_by_role("button", name=re.compile(r"^Confirmer le refus")).click()
    expect(two.get_by_role("alert")).to_contain_text("Choisissez le motif du refus")
    # A reason the API refuses (it looks like a phone number): its message, the form as typed.
    # The first reason is focused: chosen from the keyboard.
    expect(two.get_by_role("radio", name="Plus de place disponible")).to_be_focused()
    page.keyboard.press("Space")
    expect(two.get_by_role("radio", name="Plus de place disponible")).to_be_checked()
    two.get_by_label("Précisions").fill("Rappeler le 06 12 34 56 78")
    two.get_by_role("button", name=re.compile(r"^Confirmer le refus")).click()
    expect(two.get_by_role("alert")).to_contain_text("Votre réponse n’a pas été enregistrée")
    expect(two.get_by_label("Précisions")).to_have_value("Rappeler le 06 12 34 56 78")
    assert _handoff(db, second["id"]) == ("sent", False, False, None)
    two.get_by_label("Précisions").fill("Aucun lit libre avant lundi")
    two.get_by_role("button", name=re.compile(r"^Confirmer le refus")).click()
    expect(two.get_by_role("status")).to_contain_text("Orientation refusée. Motif : Plus de place disponible.")
    assert _handoff(db, second["id"]) == ("declined", False, False, "no_capacity")
    declined = "SELECT reason_code, reason FROM handoff_event WHERE handoff_id = %s AND to_status = 'declined'"
    assert _row(db, declined, second["id"]) == ("no_capacity", "Aucun lit libre avant lundi")
    expect(two).to_contain_text("Motif du refus")
    expect(two.get_by_role("button", name=re.compile(r"^Accepter"))).to_have_count(0)

    # Someone else of the organisation acknowledged the third one meanwhile: accepting it from the
    # version shown is refused, the change is shown, and accepting again applies to the current one.
    three = cards[third["id"]]
    api.call("POST", f"/v1/handoffs/{third['id']}/transitions", "partner", json={"to": "acknowledged"})
    three.get_by_role("button", name=re.compile(r"^Accepter")).click()
    conflict = three.locator(".mx-conflict")
    expect(conflict).to_be_focused()
    expect(conflict.locator("tr[data-field=status] td")).to_have_text(["Envoyée", "Réception accusée"])
    assert _handoff(db, third["id"])[0] == "acknowledged"
    conflict.get_by_role("button", name="Accepter quand même").click()
    expect(three.get_by_role("status")).to_contain_text("Orientation acceptée")
    assert _handoff(db, third["id"])[0] == "accepted"


def test_a_stale_closure_never_replaces_a_colleagues(
    new_page: Callable[[], Page], db: psycopg.Connection[Any], new_service: Callable[[str], dict[str, Any]]
) -> None:
    service = new_service("Accueil de jour")
    a, b = new_page(), new_page()
    _open_listings(a, service["name"])
    _open_listings(b, service["name"])
    card_a, card_b = _card(a, service["id"]), _card(b, service["id"])
    tomorrow = datetime.now(PARIS).date() + timedelta(days=1)

    card_a.get_by_role("button", name=re.compile(r"^Fermer temporairement")).click()
    card_a.get_by_label("Fermé à partir du").fill(tomorrow.isoformat())
    card_a.get_by_label("Motif").fill("Travaux")
    card_a.get_by_role("button", name=re.compile(r"^Enregistrer la fermeture")).click()
    expect(card_a.get_by_role("status")).to_contain_text("Fermeture enregistrée")
    closed = _row(
        db, "SELECT status, closed_from, closed_until, closure_message FROM service WHERE id = %s", service["id"]
    )
    assert closed == ("temporarily_closed", datetime.combine(tomorrow, time(0), PARIS), None, "Travaux")

    # B still sees the service open, and closes it for other dates: refused, A's closure kept, and
    # B is shown the closure it did not know about.
    card_b.get_by_role("button", name=re.compile(r"^Fermer temporairement")).click()
    card_b.get_by_label("Fermé à partir du").fill((tomorrow + timedelta(days=3)).isoformat())
    card_b.get_by_role("button", name=re.compile(r"^Enregistrer la fermeture")).click()
    conflict = card_b.locator(".mx-conflict")
    expect(conflict).to_be_visible()
    expect(conflict.get_by_role("heading")).to_have_text("Ce service a été modifié pendant que vous le consultiez")
    expect(conflict).to_contain_text("Travaux")
    assert (
        _row(db, "SELECT status, closed_from, closed_until, closure_message FROM service WHERE id = %s", service["id"])
        == closed
    )

    # Confirming the listing on the stale version is refused the same way.
    card_a.get_by_role("button", name=re.compile(r"^Rouvrir maintenant")).click()
    expect(card_a.get_by_role("status")).to_contain_text("Service rouvert")
    (verified,) = _row(db, "SELECT last_verified_at FROM service WHERE id = %s", service["id"])
    _card(b, service["id"]).locator(".mx-conflict").get_by_role("button", name="Abandonner ma modification").click()
    card_b.get_by_role("button", name=re.compile(r"^Confirmer que cette fiche est à jour")).click()
    expect(card_b.locator(".mx-conflict")).to_be_visible()
    assert _row(db, "SELECT last_verified_at FROM service WHERE id = %s", service["id"]) == (verified,)
