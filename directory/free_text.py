"""Free text about a child refuses what looks like identifying data (DESIGN §3, "Minimisation").

A case is pseudonymous: no name, birth date, address or phone. The few free-text fields callers may
write (a case's `safe_contact`, a handoff's or a transition's `reason`, a pathway event's `note`) must
not smuggle them back in. The GDPR's data minimisation (art. 5(1)(c)) and the CNIL's recommendations
on free-comment fields ("zones bloc-notes": adequate, relevant, not excessive, objective) ask for
it; a hotline writing fast, under stress, is exactly where an aunt's mobile number or the
foster home's street lands in a comment box. So `no_identifying_data` refuses, before anything is
written, text that contains:

- a phone number: French (`06 12 34 56 78`, `0612345678`, `06.12.34.56.78`: 0, a non-zero digit and
  eight more digits, grouped by spaces, or in pairs by dots or dashes) or international (`+` or `00`,
  then 7 to 15 digits grouped by spaces, dots, dashes or brackets: `+33 (0)6 12 34 56 78`,
  `+44 20 7946 0958`, `0033 6 12 34 56 78`). Short service numbers (119, 115, 17, 3919, 116 000)
  and ages ("14 et 16 ans") pass;
- an e-mail address (`x@y.tld`, also `x(at)y.tld` and `x[at]y.tld`);
- a street address: a number (`12`, `3 bis`, `12B`, `12-14`, `12 à 14`) followed by a street type
  (rue, avenue, boulevard, chemin, impasse, allée, route, quai, square, sentier, résidence, cité,
  lotissement, lieu-dit… and their abbreviations), whatever the case and accents. Street types that
  are also everyday words (place, cours, voie, passage, mail, bd, CRS…) count only when a capitalised
  name follows: "1 place de la République" is refused, "il reste 1 place" and "envoyé 1 mail" are
  not. "porte 3", "à la rue depuis 12 jours" pass: the number must come before the street type;
- a date of birth: a date (`03/04/2010`, `3/4/10`, `2010-04-03`, `3 avril 2010`, `avril 2010`,
  `April 3, 2010`, and day-month forms such as `03/04` or `3 avril`, which with the age on record
  make the whole date) that a birth marker (né, née, né(e), naissance, DDN, date de naissance, born,
  DOB, birth…) precedes within three words and in the same sentence. Without its accent, "ne" is
  a negation, and a marker only right before "le" and a date ("ne le 03/04/2010"). A date alone is
  a pathway's ordinary fact ("fugue depuis le 12/11/2026", "rappeler le 12/11") and passes.

The error says which kind was found, never the text: a refusal must not echo the very data it keeps
out (the API renders only this message, with the field's pointer).

Known limits (it is a guard against slips, not against a determined writer):
- spelt out or disguised numbers ("zéro six douze…", "O6", letters for digits), French numbers
  without their leading 0 or prefix ("6 12 34 56 78", "33 6 12…"), partial numbers, irregular
  groupings with dots or dashes ("06.123.456.78");
- a date written with spaces and followed by a number ("le 02 11 2026 14h") reads as a phone
  number; a public service number in ten digits ("0 800 05 41 41") is refused like any other;
- social network handles (`@lea_2010`), e-mails without a dotted domain, postal codes and towns,
  street names without a number, numbers written after the street name (Belgian and Swiss use:
  "bd Voltaire 12"), everyday-word street types in lower case ("12 place de la republique"),
  building, floor and flat details;
- dates of birth without a marker, with the marker after the date ("03/04/2010 (DDN)") or more
  than three words before it, or a birth year alone ("née en 2010": no more than the age the case already holds);
- names are not detected at all: free text cannot tell a child's name from a street's or a service's.
"""

from __future__ import annotations

import re
import unicodedata

_KINDS_HINT = "write no phone number, e-mail, street address or date of birth here"

# --- normalisation -----------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_DASHES = re.compile(r"[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_SPACES = re.compile(r"\s+")


def _folded(value: str) -> str:
    """Compatibility forms folded (full-width digits and @, non-breaking spaces), typographic
    apostrophes and dashes made ASCII, runs of white space made one space."""
    text = unicodedata.normalize("NFKC", value).translate(_APOSTROPHES)
    return _SPACES.sub(" ", _DASHES.sub("-", text))


def _bare(text: str) -> str:
    """Without accents (case kept): "Allée", "allee" and "ALLEE" read alike."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


# --- phone numbers -----------------------------------------------------------------------------

_FRENCH_PHONE = re.compile(
    r"(?<![\d+])0(?:"
    r" ?[1-9](?: ?\d){8}"  # 0612345678, 06 12 34 56 78, 06 123 456 78, 0 800 05 41 41
    r"|[1-9]([.-])\d\d(?:\1\d\d){3}"  # 06.12.34.56.78, 06-12-34-56-78 (one separator throughout)
    r")(?!\d)"
)
_INTERNATIONAL_PHONE = re.compile(r"(?<![\d+])(?:\+|00) ?[1-9](?:[ .()-]{0,2}\d){6,14}(?!\d)")

# --- e-mail addresses --------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+ ?(?:@|\(at\)|\[at\]) ?[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?!\w)", re.IGNORECASE)

# --- street addresses (on the text without accents) ----------------------------------------------

_NUMBER = r"(?<![\w/])\d{1,4}(?: ?(?:-|/|a|au|et) ?\d{1,4})?(?: ?(?:bis|ter|quater)\b|[a-d]\b)?"
# Street types that are hardly anything else after a number.
_STREET = (
    r"rue|ruelle|avenue|av|ave|boulevard|bld|blvd|bvd|allee|impasse|imp|chemin|quai|sentier|sente|venelle"
    r"|residence|cite|lotissement|lieu[- ]?dit|hameau|faubourg|fbg|fg|rond[- ]point|esplanade|parvis|square|sq"
    r"|route|rte|pl|chaussee"
)
# Street types that are also everyday words: only before a capitalised name, particles allowed.
_STREET_OR_WORD = r"place|cours|crs|voie|passage|promenade|montee|traverse|mail|cour|villa|parc|domaine|clos|bd"
_PARTICLES = r"(?:(?:de|du|des|la|le|les|aux?) |[dl]')*"
_ADDRESS = re.compile(
    rf"{_NUMBER} ?,? ?(?:(?:{_STREET})\b\.?|(?:{_STREET_OR_WORD})\b\.? {_PARTICLES}(?-i:[A-Z]))",
    re.IGNORECASE,
)

# --- dates of birth (on the text with its accents: "né" is a marker, "ne" a negation) -------------

_BIRTH_MARKER = (
    r"(?<!\w)(?:né(?:e|\(e\)|[-·.]e)?s?|nees?|ne\(e\)s?|ne(?= le \d)|born|birth\w*|naissance"
    r"|(?:naiss|d\.? ?d\.? ?n|d\.? ?o\.? ?b)\.?)(?!\w)"  # abbreviations may end with a dot
)
_WITHIN_THREE_WORDS = r"(?:[^\w.;!?]+\w[\w'-]*){0,3}?[^\w.;!?]+"
_MONTH = (
    r"(?:janv(?:ier)?|f[ée]vr?(?:ier)?|mars|avr(?:il)?|mai|juin|juil(?:let)?|ao[uû]t|sept?(?:embre)?"
    r"|oct(?:obre)?|nov(?:embre)?|d[ée]c(?:embre)?|january|february|march|april|may|june|july|august"
    r"|september|october|november|december|jan|feb|mar|apr|jun|jul|aug)\.?(?!\w)"
)
_DATE = (
    r"(?:\d{4} ?[/.-] ?\d{1,2} ?[/.-] ?\d{1,2}"  # 2010-04-03
    r"|\d{1,2} ?[/.-] ?\d{1,2}(?: ?[/.-] ?\d{2,4})?"  # 03/04/2010, 3/4/10, 03/04
    rf"|(?:1er|\d{{1,2}}) {_MONTH}(?: \d{{2,4}})?"  # 3 avril 2010, 1er mai
    rf"|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}"  # April 3, 2010
    rf"|{_MONTH} \d{{4}})"  # avril 2010
)
_DATE_OF_BIRTH = re.compile(rf"{_BIRTH_MARKER}{_WITHIN_THREE_WORDS}{_DATE}", re.IGNORECASE)


def identifying_kind(value: str) -> str | None:
    """What identifying data the text seems to hold ("a phone number"…), or None."""
    text = _folded(value)
    bare = _bare(text)
    if _EMAIL.search(bare):
        return "an e-mail address"
    if _FRENCH_PHONE.search(bare) or _INTERNATIONAL_PHONE.search(bare):
        return "a phone number"
    if _DATE_OF_BIRTH.search(text):
        return "a date of birth"
    if _ADDRESS.search(bare):
        return "a street address"
    return None


def no_identifying_data(value: str) -> str:
    """Pydantic AfterValidator for free text about a child: the message names the kind, never the value."""
    kind = identifying_kind(value)
    if kind is not None:
        raise ValueError(f"looks like {kind}: {_KINDS_HINT}")
    return value
