"""Place-name normalisation shared by the loader and the autocomplete, so both sides agree.

"Saint-Étienne" → "saint etienne", "L'Haÿ-les-Roses" → "l hay les roses", and the usual abbreviations
a caller types ("st", "ste", "s/") are expanded the same way on the query side.
"""

import re
import unicodedata

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SUR = re.compile(r"\bs/")
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    ascii_only = _SUR.sub("sur ", ascii_only)
    words = _NON_ALNUM.sub(" ", ascii_only).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)
