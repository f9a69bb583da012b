import psycopg
from psycopg import AsyncConnection

from directory.seeding import seed_crips
from tests.database import plain


async def test_one_unverified_crip_per_collectivite_at_its_seat(reader: AsyncConnection) -> None:
    row = await (
        await reader.execute("""
        SELECT count(*), count(DISTINCT o.collectivite_code),
               bool_and(o.seat_commune_code = k.seat_commune_code),
               bool_and(o.verification = 'unverified' AND o.phone IS NULL AND o.email IS NULL
                        AND o.website IS NULL AND NOT o.demo)
          FROM organisation o JOIN collectivite k ON k.code = o.collectivite_code WHERE o.kind = 'crip'""")
    ).fetchone()
    assert tuple(row) == (100, 100, True, True)


def test_seeding_again_updates_and_never_duplicates(database_url: str) -> None:
    query = "SELECT id, seed_key, name FROM organisation WHERE kind = 'crip' ORDER BY seed_key"
    with psycopg.connect(plain(database_url)) as conn:
        before = conn.execute(query).fetchall()
        conn.execute("UPDATE organisation SET name = 'stale' WHERE seed_key = 'crip:93D'")
        assert seed_crips(conn) == 100
        assert conn.execute(query).fetchall() == before
        conn.rollback()
    names = {row[1]: row[2] for row in before}
    assert (
        names["crip:93D"] == "Cellule de recueil des informations préoccupantes — Département de la Seine-Saint-Denis"
    )
