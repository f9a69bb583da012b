"""The specialism taxonomy: stable slugs, French and English labels, and the closest data·inclusion
thématique where one exists (data-inclusion-schema 1.0.10, Licence Ouverte 2.0).

Slugs are part of the API contract: never rename one; retire it and bump VERSION instead.
The database table `specialism` mirrors this list (loaded by `maillage seed`); requests are
validated against it without a database round trip.
"""

from dataclasses import dataclass

VERSION = "2026.1"


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

SLUGS = frozenset(s.slug for s in SPECIALISMS)
