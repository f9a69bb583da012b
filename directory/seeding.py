"""Idempotent seeds for the directory, upserted on their natural key (`organisation.seed_key`)."""

import psycopg


def seed_crips(conn: psycopg.Connection) -> int:
    """One CRIP per collectivité, at the collectivité's seat. Contact fields stay empty and unverified:
    they are filled in by the CRIP itself, never invented here."""
    cur = conn.execute(
        """
        INSERT INTO organisation (id, name, kind, collectivite_code, seat_commune_code, verification, seed_key)
        SELECT gen_random_uuid(),
               'Cellule de recueil des informations préoccupantes — ' || k.name,
               'crip', k.code, k.seat_commune_code, 'unverified', 'crip:' || k.code
          FROM collectivite k
        ON CONFLICT (seed_key) DO UPDATE SET
            name = EXCLUDED.name, collectivite_code = EXCLUDED.collectivite_code,
            seat_commune_code = EXCLUDED.seat_commune_code
        """
    )
    return cur.rowcount
