"""Response schemas. Hot routes return JSON built in SQL; these models document it in OpenAPI and
let tests validate what the SQL produced."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from directory.schemas import CollectiviteCode, Input, Name, OneLine

from .params import PointIn


class CodeName(BaseModel):
    code: str
    name: str


class CripRef(BaseModel):
    id: uuid.UUID
    name: str


class Resolution(BaseModel):
    commune: CodeName
    departement: CodeName
    region: CodeName
    collectivite: CodeName = Field(description="The collectivité that runs child protection here.")
    crip: CripRef | None = Field(description="The CRIP to alert for this place.")
    match: Literal["inside", "nearest"] = Field(
        description="`inside` a commune boundary, or `nearest` commune within 2 km (coastline gaps)."
    )


class ResolveBatchIn(Input):
    points: list[PointIn] = Field(min_length=1, max_length=1000)


class ResolveBatchOut(BaseModel):
    results: list[Resolution | None] = Field(description="One entry per point, in order; null outside France.")


class Link(BaseModel):
    rel: str
    href: str
    type: str


class TerritoryFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None = Field(description="GeoJSON MultiPolygon, or null with geometry=none.")
    properties: dict[str, Any]


class TerritoryCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[TerritoryFeature]
    links: list[Link]


class CommuneOut(BaseModel):
    code: str
    name: str
    postal_codes: list[str]
    population: int | None
    departement: CodeName
    collectivite: dict[str, str]
    point: dict[str, Any] | None = Field(description="GeoJSON Point of the mairie (or a point inside the commune).")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    migration: str
    # Whether a worker (api/jobs.py) sent a heartbeat lately; the API serves without one, but handoffs
    # stop expiring and webhooks stop leaving. Queue figures are for admins (GET /v1/jobs/health).
    worker: Literal["alive", "absent"]
    territories: int | None = Field(
        description="The COG year of the loaded territories (commune codes are those of 1 January of that year)."
    )


class TerritoriesReference(BaseModel):
    reference_year: int | None = Field(description="COG vintage: the communes as of 1 January of that year.")
    source: str
    version: str
    licence: str
    loaded_at: str


class TerritoriesIndex(BaseModel):
    reference: TerritoriesReference
    links: list[Link]


class JobQueue(BaseModel):
    todo: int = Field(description="Jobs waiting, due or scheduled later.")
    due: int = Field(description="Jobs waiting whose time has come.")
    doing: int
    failed: int = Field(description="Failed jobs, kept 30 days.")


class JobWorkers(BaseModel):
    alive: int = Field(description="Workers whose heartbeat is recent.")
    last_heartbeat: datetime | None


class PeriodicTask(BaseModel):
    task: str
    schedule: str = Field(description="Cron, UTC (a sixth field is seconds).")
    last_success: datetime | None
    last_failure: datetime | None


class JobsHealth(BaseModel):
    queue: JobQueue
    oldest_due_seconds: float | None = Field(description="How long the oldest due job has waited; null when none.")
    workers: JobWorkers
    tasks: list[PeriodicTask]


class SpecialismOut(BaseModel):
    slug: str
    label_fr: str
    label_en: str
    data_inclusion: str | None = Field(description="Closest data·inclusion thématique, when one exists.")


class Taxonomy(BaseModel):
    version: str
    items: list[SpecialismOut]


class OrganisationRef(BaseModel):
    id: uuid.UUID
    name: str
    kind: str


class LocationSummary(BaseModel):
    id: uuid.UUID
    name: str | None
    visibility: Literal["public", "confidential"]
    commune_code: str
    archived_at: str | None


class ListingSource(BaseModel):
    """Where an imported listing comes from: open data its organisation does not keep in Maillage."""

    name: str
    licence: str
    url: str
    updated_on: str | None = Field(description="The source's own date of last change.")


class ServiceProperties(BaseModel):
    name: str
    organisation: OrganisationRef
    specialisms: list[str]
    audiences: list[str]
    age_min: int | None
    age_max: int | None
    genders: list[str]
    languages: list[str]
    channels: list[str]
    distance_m: int | None = Field(description="Metres on the spheroid; rounded to the km for confidential locations.")
    covers: bool = Field(description="The service's area covers the searched place.")
    location_precision: Literal["exact", "commune"] | None
    confidential: bool | None = Field(
        description="The service's location is confidential (a safe house): true whether or not you see its "
        "exact point and address (its own organisation, and the specialists whose placement there is under "
        "way, do; everyone else sees its commune and `front_door`). false for a public place, whatever its "
        "`location_precision`; null without a location. The console, like any client, must never pass on the "
        "address or point of a confidential place — to a child, a caller or anyone not allowed to see it — "
        "and says so wherever it shows them."
    )
    commune: CodeName | None
    address: str | None
    front_door: dict[str, str | None] | None = Field(description="Contact of a confidential location.")
    contact: dict[str, str | None]
    open_now: bool | None = Field(description="null when the hours are unknown.")
    next_opening: str | None
    status: Literal["active", "temporarily_closed", "suspended"]
    closure: dict[str, Any] | None
    capacity: dict[str, Any] | None
    last_verified_at: str | None
    stale: bool = Field(description="Not verified for 180 days.")
    source: ListingSource | None = Field(
        description="Imported from an outside source (open data), or null when its organisation keeps it here."
    )
    demo: bool


class Match(BaseModel):
    """Why a service is on a search's page, in the terms of the search."""

    specialisms: list[str] = Field(description="The requested specialisms it offers (empty when none asked).")
    reach: Literal["within_radius", "covers_place", "national", "in_box"] | None = Field(
        description="How it reaches the place: received within the radius, one of its areas covers the place, "
        "it serves all of France, or (bbox) it lies in the box."
    )
    distance_band: Literal["0-2 km", "2-10 km", "10-30 km", "30-100 km", "100+ km"] | None = Field(
        description="From the origin; null without a location or an origin."
    )
    open: Literal["open_now", "opens_later", "closed", "hours_unknown"]
    capacity: Literal["available", "limited", "full", "waitlist"] | None = Field(description="null when unknown.")
    fresh: bool = Field(description="Verified within 180 days.")
    away_km: int | None = Field(
        description="With away_from: whole km from the place of danger to where it receives people (a safe "
        "house's commune point); null otherwise or without a location."
    )


class SearchServiceProperties(ServiceProperties):
    match: Match


class ServiceFeature(BaseModel):
    type: Literal["Feature"]
    id: uuid.UUID
    geometry: dict[str, Any] | None
    properties: SearchServiceProperties


class AreaSummary(BaseModel):
    id: uuid.UUID
    communes: list[str]
    departements: list[str]
    collectivites: list[str]
    regions: list[str]
    radius_km: float | None
    national: bool


class ServiceDetailProperties(ServiceProperties):
    description: str | None
    schedule: dict[str, Any]
    areas: list[AreaSummary]
    archived_at: str | None = Field(description="Archived services are read by their organisation and admins only.")
    location_id: uuid.UUID | None = Field(default=None, description="For the service's organisation and admins only.")
    location: LocationSummary | None = Field(
        default=None, description="For the service's organisation and admins only."
    )


class ServiceDetail(BaseModel):
    """One service: its search feature, plus what a detail page and its managers need."""

    type: Literal["Feature"]
    id: uuid.UUID
    geometry: dict[str, Any] | None
    properties: ServiceDetailProperties


class EmptyReason(BaseModel):
    code: Literal["nothing_in_range", "filtered_out"]
    candidates: int
    filters: list[dict[str, Any]] | None = None
    detail: str


class ServiceCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[ServiceFeature]
    links: list[Link]
    empty_reason: EmptyReason | None


class OrganisationOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    description: str | None
    website: str | None
    email: str | None
    phone: str | None
    identifiers: dict[str, str | None]
    collectives: list[str]
    collectivite: CodeName | None
    seat: CodeName | None
    verification: Literal["unverified", "verified"]
    verified_at: str | None
    deactivated_at: str | None
    demo: bool


class ServiceSummary(BaseModel):
    id: uuid.UUID
    name: str
    specialisms: list[str]
    status: str
    demo: bool


class OrganisationDetail(OrganisationOut):
    services: list[ServiceSummary]
    contact_state: Literal["verified", "unverified", "missing"] | None = None


class OrganisationList(BaseModel):
    items: list[OrganisationOut]
    links: list[dict[str, str]]


class Geocoding(BaseModel):
    score: float
    type: Literal["housenumber", "street", "locality"]


class Placement(BaseModel):
    method: Literal["geocoded", "commune"]
    detail: str


class LocationOut(BaseModel):
    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str | None
    address: str | None = Field(description="Only for the location's own organisation when confidential.")
    commune: CodeName
    point: dict[str, Any] = Field(
        description="GeoJSON Point; the commune's point for a confidential location "
        "seen by anyone but its organisation."
    )
    location_precision: Literal["exact", "commune"]
    visibility: Literal["public", "confidential"]
    front_door: dict[str, str | None]
    geocoding: Geocoding | None = Field(
        description="When the point came from the geocoder: its score and result type (for those who see the point)."
    )
    archived_at: str | None
    version: int
    placement: Placement | None = Field(
        default=None,
        description="Only in the answer to a creation without a point: how the location was placed, and why.",
    )


class LocationPage(BaseModel):
    items: list[LocationOut]
    links: list[dict[str, str]]


class AreaOut(BaseModel):
    id: uuid.UUID
    service_id: uuid.UUID
    communes: list[str]
    departements: list[str]
    collectivites: list[str]
    regions: list[str]
    radius_km: float | None
    national: bool
    archived_at: str | None
    version: int


class AreaPage(BaseModel):
    items: list[AreaOut]
    links: list[dict[str, str]]


class Revision(BaseModel):
    id: int
    at: str
    entity: Literal["organisation", "service", "location", "service_area"]
    entity_id: uuid.UUID
    action: str
    changes: dict[str, dict[str, Any]] = Field(
        description='field → {old, new}; `{"redacted": true}` for a confidential location\'s former point '
        "or address, read by anyone but its organisation"
    )
    actor: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[Revision]
    links: list[dict[str, str]]


class FreshnessItem(BaseModel):
    service_id: uuid.UUID
    name: str
    last_verified_at: str | None
    due_at: str | None
    stale: bool


class Freshness(BaseModel):
    organisation_id: uuid.UUID
    stale_after_days: int
    within_days: int
    items: list[FreshnessItem]


class ClientOut(BaseModel):
    client_id: uuid.UUID
    name: str
    role: str
    organisation_id: uuid.UUID | None
    collectivite_code: str | None
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ClientSecret(ClientOut):
    client_secret: str = Field(description="Shown once: store it now; only its hash is kept.")


class PartnerClientCreate(Input):
    """A partner organisation's system: it acts for that organisation."""

    role: Literal["partner"]
    name: Name
    organisation_id: uuid.UUID


class DepartmentClientCreate(Input):
    """A département's system: it reads its collectivité's statistics."""

    role: Literal["department"]
    name: Name
    collectivite_code: CollectiviteCode


class StaffClientCreate(Input):
    """A system of the 119 unit (specialist) or of the operator (admin)."""

    role: Literal["specialist", "admin"]
    name: Name


# Which fields a client has depends on its role: the document says so (oneOf on `role`), and a field
# that does not belong to the role is refused rather than ignored.
ClientCreate = Annotated[PartnerClientCreate | DepartmentClientCreate | StaffClientCreate, Field(discriminator="role")]


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class CaseOut(BaseModel):
    """A case. Partners get only id, reference, age, needs, safety flags, status and their handoffs."""

    id: uuid.UUID
    reference: str
    age: int
    needs: list[str]
    do_not_contact_minor_directly: bool
    do_not_contact_parents: bool
    safe_contact: str | None
    status: Literal["open", "closed"]
    version: int
    gender: str | None = None
    residence_collectivite: CodeName | None = None
    found_in_commune: CodeName | None = None
    intake_channel: str | None = None
    caller: str | None = None
    known_to_child_welfare: str | None = None
    opened_at: str | None = None
    closed_at: str | None = None
    handoffs: list[dict[str, Any]]


class HandoffOut(BaseModel):
    id: uuid.UUID
    case_id: uuid.UUID
    kind: str
    status: str
    sender: dict[str, Any]
    receiver: dict[str, Any]
    service: dict[str, Any] | None
    beneficiary: str
    urgency: str
    legal_basis: str
    reason: str | None
    acknowledge_by: str
    overdue: bool
    acknowledged_at: str | None
    accepted_at: str | None
    closed_at: str | None
    decline_reason: str | None
    created_at: str
    version: int


class HandoffPage(BaseModel):
    items: list[HandoffOut]
    links: list[dict[str, str]]


class CompetentCrip(BaseModel):
    reason: Literal["residence", "found_in"]
    collectivite: CodeName
    crip: dict[str, Any]


class PathwayItem(BaseModel):
    type: Literal["handoff_created", "handoff_moved", "event"]
    at: str
    kind: str
    by: dict[str, Any]
    model_config = {"extra": "allow"}


class AssigneeOut(BaseModel):
    """A specialist working a case through a handoff (besides its sender)."""

    issuer: str
    subject: str
    added_at: datetime
    added_by: str


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    created_at: datetime
    disabled_at: datetime | None


class SubscriptionSecret(SubscriptionOut):
    secret: str = Field(description="Standard Webhooks signing secret (whsec_…), shown once.")


class DeliveryOut(BaseModel):
    id: int
    outbox_event_id: int
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class AuditItem(BaseModel):
    id: int
    at: str
    actor: dict[str, Any]
    action: str
    object_type: str
    object_id: uuid.UUID | None
    case_id: uuid.UUID | None
    outcome: str
    status_code: int
    request_id: str | None


class AuditPage(BaseModel):
    items: list[AuditItem]
    links: list[dict[str, str]]


class StatsCell(BaseModel):
    """One combination of the grouping's values: every one is listed, whether or not anything happened
    there. Its figures are null when it is suppressed."""

    model_config = {"extra": "allow"}  # the grouping dimensions asked for

    handoffs: int | None
    cases: int | None
    accepted_rate: float | None
    declined_rate: float | None
    failed_rate: float | None
    declined_rate_by_reason: dict[str, float | None] | None
    overdue: int | None
    cases_with_runaway: int | None
    median_hours_to_acknowledgement: float | None
    p90_hours_to_acknowledgement: float | None
    median_hours_to_acceptance: float | None
    p90_hours_to_acceptance: float | None
    masked: list[str] = Field(
        description="Counts hidden (with the rates made from them) because they counted fewer than k, zero "
        "included, or would give such a count away."
    )
    suppressed: bool = Field(
        description="No figure: fewer than k distinct cases (none at all included), or a neighbour's "
        "complementary suppression."
    )


class StatsOut(BaseModel):
    k: int
    suppression: str
    filters: dict[str, Any]
    group_by: list[str]
    cells: list[StatsCell]
    total: StatsCell


class NeedsCell(BaseModel):
    """A (collectivité, specialism) with at least one signal to publish; the others are not listed."""

    collectivite: str
    specialism: str | None
    empty_searches: int | None
    declined_no_capacity: int | None
    declined_out_of_territory: int | None
    expired: int | None
    suppressed: list[str] = Field(
        description="The signals with nothing to publish (null): no month of theirs reached k, or none had any."
    )


class NeedsOut(BaseModel):
    k: int
    suppression: str
    filters: dict[str, Any]
    cells: list[NeedsCell]


class CoverageItem(BaseModel):
    collectivite: str
    specialism: str
    population: int
    covered_population: int
    covered_share: float | None
    uncovered_communes: list[dict[str, Any]]


class CoverageOut(BaseModel):
    within_km: float
    min_population: int
    items: list[CoverageItem]
    uncovered: dict[str, Any] | None = None


class BindingOut(BaseModel):
    binding_id: uuid.UUID
    issuer: str
    claim: str
    value: str
    role: str
    organisation_id: uuid.UUID | None
    collectivite_code: str | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class _BindingCreate(Input):
    issuer: Annotated[OneLine, Field(max_length=300, description="A configured provider's issuer, exactly.")]
    claim: Annotated[OneLine, Field(max_length=100, description="One of that provider's mapped claims.")]
    value: Annotated[OneLine, Field(min_length=1, max_length=200, description="The claim's value, e.g. a group.")]


class PartnerBindingCreate(_BindingCreate):
    """The provider's people with this claim value act for a partner organisation."""

    role: Literal["partner"]
    organisation_id: uuid.UUID


class DepartmentBindingCreate(_BindingCreate):
    """The provider's people with this claim value read a collectivité's statistics."""

    role: Literal["department"]
    collectivite_code: CollectiviteCode


class StaffBindingCreate(_BindingCreate):
    """The provider's people with this claim value are the 119's specialists or the operator's admins."""

    role: Literal["specialist", "admin"]


# As for API clients: which fields a binding has depends on its role (oneOf on `role`).
BindingCreate = Annotated[
    PartnerBindingCreate | DepartmentBindingCreate | StaffBindingCreate, Field(discriminator="role")
]


class ActingOrganisation(BaseModel):
    id: uuid.UUID
    name: str | None = Field(description="Null only when no organisation has this id (a token issued by hand).")
    active: bool = Field(
        description="False once an administrator deactivated it: its listings are out of search and its "
        "clients get no new token (a token issued before stays valid until it expires, 15 minutes at most)."
    )


class ActingCollectivite(BaseModel):
    code: str
    name: str | None = Field(description="Null only when no collectivité has this code (a token issued by hand).")


class Me(BaseModel):
    """Who the caller is, as the API sees them once their token is verified (and, for a person of an
    outside identity provider, once an identity binding names them)."""

    role: Literal["specialist", "partner", "department", "admin"]
    organisation: ActingOrganisation | None = Field(
        description="The organisation the caller acts for: a partner's own, the 119 unit for specialists; "
        "null for departments and admins."
    )
    collectivite: ActingCollectivite | None = Field(
        description="The collectivité whose statistics a department reads (its own only); null for the other roles."
    )
