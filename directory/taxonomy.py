"""The specialism taxonomy: stable slugs, French and English labels, and the closest data·inclusion
thématique where one exists (data-inclusion-schema 1.0.10, Licence Ouverte 2.0).

Two families. The specialised ones say what a service does for sexually exploited minors; their
`data_inclusion` thématique is only the closest one for export, never a reason to import a generic
service under them (a `sante--sante-mentale` service is not psychotrauma care for exploited minors).
The `general-*` ones name the generic offer a specialist also needs around a child (the nearest
emergency housing, health centre, legal-aid point): `DATA_INCLUSION_IMPORT` maps data·inclusion
thématiques to them, one to one, and nothing else is imported. The README shows the table.

Slugs are part of the API contract: never rename one; retire it and bump VERSION instead.
The database table `specialism` mirrors this list (loaded by `maillage seed`); requests are
validated against it without a database round trip.
"""

from dataclasses import dataclass

VERSION = "2026.2"


@dataclass(frozen=True)
class Specialism:
    slug: str
    label_fr: str
    label_en: str
    data_inclusion: str | None


SPECIALISMS: tuple[Specialism, ...] = (
    Specialism(
        "emergency-shelter",
        "Mise à l'abri",
        "Emergency shelter",
        "logement-hebergement--rechercher-une-solution-dhebergement-temporaire",
    ),
    Specialism(
        "protective-relocation",
        "Éloignement et hébergement spécialisé",
        "Specialised accommodation away from the exploitation area",
        "logement-hebergement--rechercher-une-solution-dhebergement-temporaire",
    ),
    Specialism(
        "legal-support",
        "Accompagnement juridique et dépôt de plainte",
        "Legal support and filing a complaint",
        "difficultes-administratives-ou-juridiques--prendre-en-compte-une-problematique-judiciaire",
    ),
    Specialism("psychotrauma-care", "Soins du psychotraumatisme", "Psychotrauma care", "sante--sante-mentale"),
    Specialism(
        "medical-sexual-health", "Santé et santé sexuelle", "Medical and sexual health", "sante--sante-sexuelle"
    ),
    Specialism(
        "social-educational-support",
        "Accompagnement social et éducatif",
        "Social and educational support",
        "difficultes-administratives-ou-juridiques--beneficier-dune-mesure-daccompagnement-adapte",
    ),
    Specialism("outreach", "Aller-vers (rue et en ligne)", "Outreach (street and online)", None),
    Specialism(
        "family-support",
        "Soutien aux parents et aux proches",
        "Support for parents and relatives",
        "famille--soutien-a-la-parentalite-et-a-leducation",
    ),
    Specialism("listening-line", "Ligne d'écoute", "Listening line", None),
    Specialism("school-prevention", "Prévention en milieu scolaire", "Prevention in schools", None),
    Specialism("professional-training", "Formation des professionnels", "Training of professionals", None),
    Specialism("crip", "Recueil des informations préoccupantes (CRIP)", "Child-protection referrals unit (CRIP)", None),
    Specialism(
        "unaccompanied-minors",
        "Mineurs non accompagnés",
        "Unaccompanied foreign minors",
        "difficultes-administratives-ou-juridiques--accompagnement-pour-lacces-aux-droits",
    ),
    Specialism("youth-addiction-care", "Addictions des jeunes", "Addiction care for young people", "sante--addictions"),
    Specialism(
        "prostitution-exit",
        "Parcours de sortie de la prostitution",
        "Exit-from-prostitution pathway",
        "difficultes-administratives-ou-juridiques--accompagnement-pour-lacces-aux-droits",
    ),
    Specialism(
        "schooling-integration",
        "Scolarité et insertion",
        "Schooling and integration",
        "se-former--trouver-sa-formation",
    ),
)

_GENERAL: tuple[tuple[str, str, str, str], ...] = (
    (
        "general-temporary-housing",
        "Hébergement temporaire (offre généraliste)",
        "Temporary housing (general services)",
        "logement-hebergement--rechercher-une-solution-dhebergement-temporaire",
    ),
    (
        "general-health-care",
        "Accès aux soins (offre généraliste)",
        "Access to care (general services)",
        "sante--acces-aux-soins",
    ),
    (
        "general-mental-health",
        "Santé mentale (offre généraliste)",
        "Mental health (general services)",
        "sante--sante-mentale",
    ),
    (
        "general-sexual-health",
        "Santé sexuelle (offre généraliste)",
        "Sexual health (general services)",
        "sante--sante-sexuelle",
    ),
    (
        "general-addiction-care",
        "Addictions (offre généraliste)",
        "Addiction care (general services)",
        "sante--addictions",
    ),
    (
        "general-access-to-rights",
        "Accès aux droits (offre généraliste)",
        "Access to rights (general services)",
        "difficultes-administratives-ou-juridiques--accompagnement-pour-lacces-aux-droits",
    ),
    (
        "general-legal-matters",
        "Problématique judiciaire (offre généraliste)",
        "Legal and judicial matters (general services)",
        "difficultes-administratives-ou-juridiques--prendre-en-compte-une-problematique-judiciaire",
    ),
    (
        "general-parenting-support",
        "Soutien à la parentalité (offre généraliste)",
        "Parenting support (general services)",
        "famille--soutien-a-la-parentalite-et-a-leducation",
    ),
    (
        "general-family-violence",
        "Conflits familiaux, séparation, violences (offre généraliste)",
        "Family conflict, separation, violence (general services)",
        "famille--surmonter-conflits-separation-violence",
    ),
    (
        "general-food-aid",
        "Aide alimentaire (offre généraliste)",
        "Food aid (general services)",
        "equipement-et-alimentation--alimentation",
    ),
)
SPECIALISMS += tuple(Specialism(*general) for general in _GENERAL)

SLUGS = frozenset(s.slug for s in SPECIALISMS)

# data·inclusion thématique → the general specialism an imported service gets. Any other thématique
# is not imported as a specialism (reported by the import); a service with none of these is left out.
DATA_INCLUSION_IMPORT: dict[str, str] = {thematique: slug for slug, _, _, thematique in _GENERAL}
