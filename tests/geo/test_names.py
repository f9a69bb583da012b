import pytest

from geo.names import normalise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Saint-Étienne", "saint etienne"),
        ("st etienne", "saint etienne"),
        ("STE-MARIE", "sainte marie"),
        ("Île-de-Sein", "ile de sein"),
        ("L'Haÿ-les-Roses", "l hay les roses"),
        ("Œuilly", "oeuilly"),
        ("Bar-s/-Aube", "bar sur aube"),
        ("  Paris   15e ", "paris 15e"),
        ("Angers/x", "angers x"),
        ("--", ""),
        ("\u00e9", "e"),
        ("e\u0301", "e"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected
