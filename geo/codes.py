"""INSEE code helpers."""

import re

_ARRONDISSEMENT = re.compile(r"^(?:751(?:0[1-9]|1[0-9]|20)|6938[1-9]|132(?:0[1-9]|1[0-6]))$")
_COMMUNE_OF_ARRONDISSEMENT = {"75": "75056", "69": "69123", "13": "13055"}


def commune_of(code: str) -> str:
    """The commune of a municipal arrondissement of Paris, Lyon or Marseille (75107 → 75056); any
    other code is returned as it is. Sources often give arrondissement codes where a commune is meant."""
    return _COMMUNE_OF_ARRONDISSEMENT[code[:2]] if _ARRONDISSEMENT.match(code) else code
