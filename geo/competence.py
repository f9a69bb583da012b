"""Which collectivité runs child protection (and its CRIP) for a commune.

Child protection belongs to the collectivité départementale, which is not always the département:
Métropole de Lyon (its 58 communes) versus Département du Rhône (the rest of 69), Collectivité de Corse
(2A and 2B), Collectivité européenne d'Alsace (67 and 68), Ville de Paris, and the single collectivities
of Martinique, Guyane and Mayotte. Codes are the official COG codes of the collectivités.
"""

METROPOLE_DE_LYON_EPCI = "200046977"

_BY_DEPARTEMENT = {
    "2A": "20R",
    "2B": "20R",
    "67": "6AE",
    "68": "6AE",
    "75": "75C",
    "972": "972R",
    "973": "973R",
    "976": "976R",
}


def collectivite_for(departement_code: str, epci_code: str | None) -> str:
    if departement_code == "69":
        return "69M" if epci_code == METROPOLE_DE_LYON_EPCI else "69D"
    return _BY_DEPARTEMENT.get(departement_code, f"{departement_code}D")
