"""The département's workspace in a real browser: its statistics as tables, charts and CSV, the small-cell
rule shown as such, the coverage-gap map and its list, and the refusal of another département's figures.

The test writes its own handoffs in the Seine-Saint-Denis (93D, the collectivité of the demo user
analyste-93) straight into the database as the schema owner, in two past months of the console's
default period, and removes them afterwards; the rollups the statistics read are kept by the database's
own triggers at commit. Expected figures are worked out here from those rows: a cell is published when
its (month, kind) counts at least k distinct cases, and every published count carries the documented
noise of at most 2, keyed by the handoffs it counts (directory/disclosure.py's `perturb`, as
tests/api/test_stats.py does).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect

from directory import disclosure, stats
from tests.console.conftest import ARTIFACTS, ConsoleServer, check_a11y, login, screenshot

PARIS = ZoneInfo("Europe/Paris")
K = 10  # api/settings.py stats_k, not overridden by the fixture
OWN = "93D"
SECRET = "secret statistique"
COMMUNE = "93066"  # Saint-Denis: where the empty searches were made
# The kinds as the tables name them, in the API's order of cells (alphabetical by value).
KINDS = {
    "information_preoccupante": "Information préoccupante",
    "orientation": "Orientation vers un service",
    "professional_contact": "Mise en relation professionnelle",
    "shelter_request": "Demande de mise à l’abri",
    "signalement": "Signalement au parquet",
}
# The signals of unmet needs, as the needs table heads them.
NEEDS = [
    "Recherches sans résultat",
    "Refus faute de place",
    "Refus hors territoire",
    "Orientations expirées sans réponse",
]
# Specialisms no real (non-demo) service may offer in the test database: the first one without any is
# the rare specialism of the coverage map.
RARE = ("prostitution-exit", "protective-relocation", "psychotrauma-care", "outreach")
MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


@dataclass(frozen=True)
class Handoff:
    id: uuid.UUID
    case: uuid.UUID
    month: str
    kind: str
    status: str
    ack_hours: float
    accept_hours: float | None
    decline_reason: str | None = None


@dataclass
class Dataset:
    name: str  # the collectivité's name
    months: list[str]  # the console's default period, oldest first
    first: str  # the two months with data
    second: str
    handoffs: list[Handoff] = field(default_factory=list)
    empty_searches: dict[str, int] = field(default_factory=dict)  # specialism → searches in `first`

    def where(self, **match: str) -> list[Handoff]:
        return [h for h in self.handoffs if all(getattr(h, k) == v for k, v in match.items())]


def month_of(day: date, back: int) -> str:
    total = day.year * 12 + day.month - 1 - back
    return f"{total // 12}-{total % 12 + 1:02d}"


def month_label(month: str) -> str:
    return f"{MONTHS_FR[int(month[5:]) - 1]} {month[:4]}"


# --- expected figures ----------------------------------------------------------------------------------

COUNTED: dict[str, Callable[[Handoff], bool]] = {
    "handoffs": lambda h: True,
    "cases": lambda h: True,
    "accepted": lambda h: h.accept_hours is not None,
    "declined": lambda h: h.status == "declined",
}


def published(rows: list[Handoff], measure: str) -> int | None:
    """What the API publishes for these handoffs: nothing under k, else the true count with its noise."""
    counted = [r for r in rows if COUNTED[measure](r)]
    true = len({r.case for r in counted}) if measure == "cases" else len(counted)
    if true < K:
        return None
    return disclosure.perturb(true, sum(r.id.bytes[15] for r in counted), stats.SALTS[measure])


def integer(value: int | None) -> str:
    return SECRET if value is None else str(value)


def percent(part: int | None, whole: int | None) -> str:
    """A rate as the API rounds it (4 decimals) and the console writes it (per cent, one decimal)."""
    if part is None or whole is None:
        return SECRET
    rate = round(min(part, whole) / whole, 4)
    return one_decimal(rate * 100)


def one_decimal(value: float) -> str:
    """As Intl.NumberFormat writes it: the shortest decimal that reads back as this double, rounded half
    away from zero."""
    return str(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)).replace(".", ",")


def percentile(values: list[float], p: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def hours(values: list[float], p: float) -> str:
    """A duration: published from k handoffs, rounded to 2 decimals by the API, written with one."""
    if len(values) < K:
        return SECRET
    return one_decimal(round(percentile(values, p), 2))


def acceptance_row(rows: list[Handoff]) -> list[str]:
    handoffs, cases = published(rows, "handoffs"), published(rows, "cases")
    if cases is None:
        return [SECRET] * 7
    return [
        integer(handoffs),
        integer(cases),
        percent(published(rows, "accepted"), handoffs),
        percent(published(rows, "declined"), handoffs),
        SECRET,  # failed: none
        SECRET,  # overdue: none (every handoff acknowledged within a day)
        SECRET,  # runaways: none
    ]


def delay_row(rows: list[Handoff]) -> list[str]:
    if published(rows, "cases") is None:
        return [SECRET] * 4
    acknowledged = [r.ack_hours for r in rows]
    accepted = [r.accept_hours for r in rows if r.accept_hours is not None]
    return [hours(acknowledged, 0.5), hours(acknowledged, 0.9), hours(accepted, 0.5), hours(accepted, 0.9)]


# --- the data ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(console_server: ConsoleServer) -> Iterator[Dataset]:
    today = datetime.now(PARIS).date()  # the browser's time zone: its default period
    with psycopg.connect(console_server.owner_url) as conn:
        name = conn.execute("SELECT name FROM collectivite WHERE code = %s", (OWN,)).fetchone()[0]
        data = Dataset(
            name=name,
            months=[month_of(today, back) for back in range(11, -1, -1)],
            first=month_of(today, 3),
            second=month_of(today, 2),
        )
        sender = conn.execute("SELECT id FROM organisation WHERE seed_key = 'hotline:119'").fetchone()[0]
        crip = "SELECT id FROM organisation WHERE kind = 'crip' ORDER BY seed_key LIMIT 1"
        receiver = conn.execute(crip).fetchone()[0]
        sequence = iter(range(10_000))

        def cases(
            month: str, kind: str, n: int, *, per_case: int, declined: bool = False, needs: tuple[str, ...] = ()
        ) -> None:
            """`n` cases of `per_case` handoffs each, created mid-month: the first handoff of each case
            accepted (declined for lack of capacity with `declined`), the others acknowledged."""
            created = datetime.fromisoformat(f"{month}-15T10:00:00+00:00")
            for i in range(n):
                case = uuid.uuid4()
                conn.execute(
                    """INSERT INTO case_record (id, reference, collectivite_code, age, intake_channel, caller,
                                                known_to_child_welfare, needs, created_by, opened_at)
                       VALUES (%s, %s, %s, 15, 'phone', 'parent', 'unknown', %s, 'tests', %s)""",
                    (case, uuid.uuid4().hex[:9], OWN, list(needs), created),
                )
                for j in range(per_case):
                    number = next(sequence)
                    handoff = uuid.UUID(bytes=uuid.uuid4().bytes[:15] + bytes([(number * 37 + 11) % 256]))
                    ack = 1 + i % 6 + j
                    first = j == 0
                    status = ("declined" if declined else "accepted") if first else "acknowledged"
                    accept = ack + 3 + i % 4 if status == "accepted" else None
                    reason = "no_capacity" if status == "declined" else None
                    conn.execute(
                        """INSERT INTO handoff (id, case_id, collectivite_code, sender_organisation_id,
                                                receiver_organisation_id, kind, beneficiary, urgency, legal_basis,
                                                status, acknowledge_by, acknowledged_at, accepted_at, decline_reason,
                                                created_at, created_by)
                           VALUES (%s, %s, %s, %s, %s, %s, 'minor', 'within_24h', 'child_protection_duty', %s, %s,
                                   %s, %s, %s, %s, 'tests')""",
                        (
                            handoff,
                            case,
                            OWN,
                            sender,
                            receiver,
                            kind,
                            status,
                            created + timedelta(hours=24),
                            created + timedelta(hours=ack),
                            created + timedelta(hours=accept) if accept is not None else None,
                            reason,
                            created,
                        ),
                    )
                    data.handoffs.append(Handoff(handoff, case, month, kind, status, ack, accept, reason))

        # Published cells: at least k cases in their (month, kind).
        cases(data.first, "orientation", 12, per_case=2)
        cases(data.first, "information_preoccupante", 11, per_case=2)
        cases(data.second, "orientation", 10, per_case=2)
        cases(data.second, "shelter_request", 10, per_case=3, declined=True, needs=("emergency-shelter",))
        # Under k: suppressed, and counted in no figure at all.
        cases(data.second, "signalement", 4, per_case=1)
        # Searches that found nothing, counted per commune: 14 shown, 3 under k left out.
        data.empty_searches = {"emergency-shelter": 14, "legal-support": 3}
        for specialism, searches in data.empty_searches.items():
            conn.execute(
                """INSERT INTO empty_search (month, commune_code, specialism, collectivite_code, searches)
                   VALUES (%s, %s, %s, %s, %s)""",
                (f"{data.first}-01", COMMUNE, specialism, OWN, searches),
            )
        conn.commit()
    yield data
    with psycopg.connect(console_server.owner_url) as conn:
        conn.execute("DELETE FROM handoff WHERE id = ANY(%s)", ([h.id for h in data.handoffs],))
        conn.execute("DELETE FROM case_record WHERE id = ANY(%s)", (list({h.case for h in data.handoffs}),))
        conn.execute(
            "DELETE FROM empty_search WHERE month = %s AND commune_code = %s AND specialism = ANY(%s)",
            (f"{data.first}-01", COMMUNE, list(data.empty_searches)),
        )
        conn.commit()


# --- reading the screen --------------------------------------------------------------------------------


def unspaced(text: str) -> str:
    """A number without its thousands separators (the CSV has none)."""
    return re.sub(r"[\u202f\u00a0 ]", "", text) if re.fullmatch(r"[\d\u202f\u00a0 ,]+", text) else text


def cells(table: Locator) -> tuple[list[str], dict[str, list[str]]]:
    """A table's column headers and its rows (body and foot) by row header, as the user reads them."""
    expect(table).to_be_visible()
    content = table.evaluate(
        """(t) => ({
            head: [...t.querySelectorAll('thead th')].map((c) => c.textContent),
            rows: [...t.querySelectorAll('tbody tr, tfoot tr')].map((r) => [...r.children].map((c) => c.textContent)),
        })"""
    )
    rows = {row[0]: [unspaced(c) for c in row[1:]] for row in content["rows"]}
    assert len(rows) == len(content["rows"]), "row headers must be unique"
    return content["head"], rows


def view(page: Page, name: str) -> None:
    """Choose one view of the figures (the segmented control's radio, through its label)."""
    page.locator("#stats-views label", has_text=name).click()
    expect(page.locator("#stats-views").get_by_role("radio", name=name)).to_be_checked()


def territory(page: Page) -> Locator:
    return page.locator("#stats-form input[name=collectivite]")


def downloaded_csv(page: Page, button: Locator) -> tuple[str, list[list[str]]]:
    with page.expect_download() as info:
        button.click()
    download = info.value
    raw = download.path().read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "a UTF-8 byte order mark, for spreadsheets"
    text = raw.decode("utf-8-sig")
    assert "\r\n" in text
    return download.suggested_filename, list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def rare_specialism(console_server: ConsoleServer) -> str:
    with psycopg.connect(console_server.owner_url) as conn:
        for slug in RARE:
            row = conn.execute(
                """SELECT count(*) FROM service s JOIN location l ON l.id = s.location_id
                    WHERE NOT s.demo AND s.archived_at IS NULL AND s.specialisms @> ARRAY[%s]::varchar[]""",
                (slug,),
            ).fetchone()
            if row[0] == 0:
                return slug
    pytest.fail(f"every one of {RARE} has a real service in the test database")


def communes_of(console_server: ConsoleServer, minimum: int) -> list[list[str]]:
    with psycopg.connect(console_server.owner_url) as conn:
        rows = conn.execute(
            """SELECT name, code, coalesce(population, 0) FROM commune
                WHERE collectivite_code = %s AND point IS NOT NULL AND coalesce(population, 0) >= %s
                ORDER BY coalesce(population, 0) DESC, code""",
            (OWN, minimum),
        ).fetchall()
    return [[name, code, str(population)] for name, code, population in rows]


# --- the journey ---------------------------------------------------------------------------------------


def test_department_reads_its_own_statistics(page: Page, console_server: ConsoleServer, dataset: Dataset) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    login(page, "analyste-93")
    title = page.get_by_role("heading", level=1)
    expect(title).to_have_text(f"Statistiques — {dataset.name} ({OWN})")
    expect(page.locator("#stats-status")).to_have_text(re.compile(r"^Statistiques affichées"))
    expect(territory(page)).to_have_value(OWN)
    expect(page.locator("#stats-form input[name=from]")).to_have_value(dataset.months[0])
    expect(page.locator("#stats-form input[name=to]")).to_have_value(dataset.months[-1])

    # The rule, stated with the API's k.
    rule = page.locator("#stats-rule")
    expect(rule).to_contain_text(f"Une case qui compte moins de {K} cas distincts")
    expect(rule).to_contain_text(f"elle apparaît « {SECRET} », jamais 0")

    # Month × kind: exactly the published cells, the others marked secret (never 0).
    head, rows = cells(page.locator("#table-month-kind"))
    assert head == ["Mois", *KINDS.values()]
    assert list(rows) == [month_label(m) for m in dataset.months]
    for month in dataset.months:
        expected = [integer(published(dataset.where(month=month, kind=kind), "handoffs")) for kind in KINDS]
        assert rows[month_label(month)] == expected, month
    first, second = rows[month_label(dataset.first)], rows[month_label(dataset.second)]
    assert [c != SECRET for c in first] == [True, True, False, False, False]
    assert [c != SECRET for c in second] == [False, True, False, True, False]  # the 4 signalements: secret
    assert "0" not in {c for row in rows.values() for c in row}
    # Its chart: one column per published cell, an "s" for each other one, and a sentence.
    chart = page.locator("#stats-month-kind svg[role=img]")
    expect(chart).to_have_attribute("aria-label", re.compile("les mêmes chiffres sont dans le tableau"))
    expect(chart.locator("rect")).to_have_count(4)
    expect(chart.locator("text.mx-st-svg-secret")).to_have_count(12 * 5 - 4)
    everything = [h for h in dataset.handoffs if h.kind != "signalement"]
    expect(page.locator("#stats-month-kind .mx-st-summary")).to_contain_text(
        f"Sur la période, {published(everything, 'handoffs')} orientations "
        f"pour {published(everything, 'cases')} cas distincts. 4 cases publiées sur 60 ; 56 couvertes"
    )

    check_a11y(page, "department-stats")
    screenshot(page, "department-stats")
    page.locator("#stats-month-kind").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "readme-department-stats.png")  # a table and its chart, for the README

    # CSV of the month × kind table: the same cells, semicolon-separated.
    name, lines = downloaded_csv(page, page.locator("#stats-month-kind button[data-csv]"))
    assert name == f"maillage-orientations-par-mois-et-type-{OWN}-{dataset.months[0]}-{dataset.months[-1]}.csv"
    head, rows = cells(page.locator("#table-month-kind"))
    assert lines[0] == head
    assert lines[1:] == [[label, *values] for label, values in rows.items()]

    # Acceptance and delays by kind, with the period's total.
    view(page, "Acceptation et délais")
    expect(page.locator("#table-month-kind")).to_be_hidden()
    head, rows = cells(page.locator("#table-acceptance"))
    assert head[1:4] == ["Orientations", "Cas distincts", "Acceptées (%)"]
    for kind, name in KINDS.items():
        assert rows[name] == acceptance_row(dataset.where(kind=kind) if kind != "signalement" else []), kind
    assert rows["Tous types"] == acceptance_row(everything)
    head, rows = cells(page.locator("#table-delays"))
    for kind, name in KINDS.items():
        assert rows[name] == delay_row(dataset.where(kind=kind) if kind != "signalement" else []), kind
    assert rows["Tous types"] == delay_row(everything)
    assert rows[KINDS["shelter_request"]][2:] == [SECRET, SECRET]  # none accepted: no delay to show
    expect(page.locator("#stats-acceptance [role=img] .mx-st-fill")).to_have_count(3)  # 2 kinds and the total
    expect(page.locator("#stats-delays [role=img]")).to_be_visible()
    check_a11y(page, "department-acceptance")

    # Unmet needs: the shelter requests declined for lack of room and the empty searches; the 3 legal
    # searches are under k, so that specialism is not listed at all.
    view(page, "Besoins non couverts")
    declined = [h for h in dataset.handoffs if h.decline_reason == "no_capacity"]
    noise = disclosure.perturb(
        len(declined), sum(h.id.bytes[15] for h in declined), stats.NEED_SALTS["declined_no_capacity"]
    )
    head, rows = cells(page.locator("#table-needs"))
    assert head == ["Spécialité", *NEEDS]
    assert rows == {"Mise à l'abri": ["14", str(noise), SECRET, SECRET]}

    name, lines = downloaded_csv(page, page.locator("#stats-needs button[data-csv]"))
    assert lines == [["Spécialité", *NEEDS], ["Mise à l'abri", "14", str(noise), SECRET, SECRET]]

    # Coverage: the communes beyond 20 km of a rare specialism, on a map and in a list.
    slug = rare_specialism(console_server)
    view(page, "Couverture du territoire")
    coverage = page.locator("#stats-coverage")
    # First the overview: the share of the population within 20 km, for every specialism but the CRIP.
    coverage.get_by_role("button", name="Afficher la couverture").click()
    head, rows = cells(page.locator("#table-coverage"))
    assert head[:4] == ["Spécialité", "Population", "Population à moins de 20 km", "Part couverte (%)"]
    labels = {option.get_attribute("value"): option.text_content() for option in coverage.locator("option").all()}
    assert sorted(rows) == sorted(label for value, label in labels.items() if value not in ("", "crip"))
    assert rows[labels[slug]][1:3] == ["0", "0,0"]  # no real service of it
    expect(page.locator("#coverage-map")).to_have_count(0)  # no map for the overview
    coverage.locator("select[name=specialism]").select_option(slug)
    coverage.get_by_role("button", name="Afficher la couverture").click()
    expect(page.locator("#coverage-status")).to_have_text(re.compile("affichée"))
    expected = communes_of(console_server, 1000)
    assert expected, "the Seine-Saint-Denis has communes of 1,000 inhabitants or more"
    head, rows = cells(page.locator("#table-uncovered"))
    assert head == ["Commune", "Code INSEE", "Population"]
    assert [[label, *values] for label, values in rows.items()] == expected  # no real service: none is covered
    expect(page.locator("#coverage-summary")).to_contain_text(f"{len(expected)} communes de 1 000 habitants ou plus")
    expect(page.locator("#coverage-map[data-ready=true] canvas")).to_be_visible()
    expect(page.locator("#coverage-map")).to_have_attribute("aria-label", re.compile("la liste qui suit"))
    name, lines = downloaded_csv(page, coverage.locator("button[data-csv]"))
    assert name == f"maillage-couverture-{OWN}-{slug}-20km.csv"
    assert lines == [head, *expected]
    check_a11y(page, "department-coverage")
    screenshot(page, "department-coverage")

    # Another département: refused by the API, said plainly, and no figure at all on the page.
    territory(page).fill("75C")
    page.get_by_role("button", name="Afficher les statistiques").click()
    refusal = page.get_by_role("alert")
    expect(refusal).to_contain_text(
        f"Vous ne pouvez consulter que les statistiques de votre collectivité : {dataset.name} ({OWN})."
    )
    expect(page.locator("#stats-status")).to_have_text("Accès refusé : aucune statistique affichée.")
    expect(page.locator("#contenu table")).to_have_count(0)
    expect(page.locator("#contenu svg, #contenu canvas, #contenu [role=img]")).to_have_count(0)
    expect(page.locator("#stats-views, #stats-coverage")).to_have_count(0)
    expect(page.get_by_role("heading", level=1)).to_have_text("Statistiques")
    check_a11y(page, "department-refused")

    # Back to its own territory: the figures return.
    territory(page).fill(OWN.lower())
    page.get_by_role("button", name="Afficher les statistiques").click()
    expect(page.locator("#stats-views").get_by_role("radio", name="Couverture du territoire")).to_be_checked()
    view(page, "Orientations par mois")  # the view chosen last stays chosen
    expect(page.locator("#table-month-kind")).to_be_visible()
    expect(territory(page)).to_have_value(OWN)

    # A period that ends before it starts: caught in the form, nothing asked, the figures stay.
    page.locator("#stats-form input[name=from]").fill(dataset.months[-1])
    page.locator("#stats-form input[name=to]").fill(dataset.months[0])
    page.get_by_role("button", name="Afficher les statistiques").click()
    start = page.locator("#stats-form input[name=from]")
    expect(start).to_have_attribute("aria-invalid", "true")
    expect(start).to_be_focused()
    expect(page.locator("#stats-form .fr-error-text")).to_have_text("Le premier mois doit précéder le dernier.")
    expect(page.locator("#table-month-kind")).to_be_visible()
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def test_an_admin_reads_any_collectivite(page: Page, dataset: Dataset) -> None:
    login(page, "admin")
    page.locator("#tabs").get_by_role("button", name="Statistiques").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Statistiques — France entière")
    expect(page.locator("#table-month-kind")).to_be_visible()
    expect(page.locator("#coverage-note")).to_contain_text("Indiquez un territoire")
    territory(page).fill(OWN)
    page.get_by_role("button", name="Afficher les statistiques").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Statistiques — {dataset.name} ({OWN})")
    _, rows = cells(page.locator("#table-month-kind"))
    kinds = list(KINDS)
    orientation = dataset.where(month=dataset.first, kind="orientation")
    assert rows[month_label(dataset.first)][kinds.index("orientation")] == integer(published(orientation, "handoffs"))
    territory(page).fill("75D")  # no such collectivité (Paris is 75C)
    page.get_by_role("button", name="Afficher les statistiques").click()
    expect(page.get_by_role("alert")).to_contain_text("Aucune collectivité ne porte le code 75D.")
    expect(page.locator("#contenu table")).to_have_count(0)
