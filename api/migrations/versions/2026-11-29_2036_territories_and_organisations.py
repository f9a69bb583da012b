"""Territories (régions, départements, collectivités, communes) and organisations.

Creates the PostGIS and pg_trgm extensions first: every later migration may rely on them.

Revision ID: dd74bb3bfac9
Revises: 
Create Date: 2026-11-29 20:36:10.193333
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision: str = 'dd74bb3bfac9'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table('reference_dataset',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=False),
    sa.Column('licence', sa.String(length=100), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_reference_dataset'))
    )
    op.create_table('region',
    sa.Column('code', sa.String(length=3), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_region'))
    )
    op.create_geospatial_table('collectivite',
    sa.Column('code', sa.String(length=4), nullable=False),
    sa.Column('name', sa.String(length=150), nullable=False),
    sa.Column('kind', sa.Enum('departement', 'special_status', name='collectivitekind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('region_code', sa.String(length=3), nullable=False),
    sa.Column('seat_commune_code', sa.String(length=5), nullable=False),
    sa.Column('boundary', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('boundary_simplified', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.ForeignKeyConstraint(['region_code'], ['region.code'], name=op.f('fk_collectivite__region_code__region')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_collectivite'))
    )
    op.create_geospatial_index('ix_collectivite__boundary', 'collectivite', ['boundary'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_collectivite__region_code'), 'collectivite', ['region_code'], unique=False)
    op.create_geospatial_table('departement',
    sa.Column('code', sa.String(length=3), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('region_code', sa.String(length=3), nullable=False),
    sa.Column('seat_commune_code', sa.String(length=5), nullable=False),
    sa.Column('boundary', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('boundary_simplified', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.ForeignKeyConstraint(['region_code'], ['region.code'], name=op.f('fk_departement__region_code__region')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_departement'))
    )
    op.create_geospatial_index('ix_departement__boundary', 'departement', ['boundary'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_departement__region_code'), 'departement', ['region_code'], unique=False)
    op.create_geospatial_table('commune',
    sa.Column('code', sa.String(length=5), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('search_name', sa.String(length=100), nullable=False),
    sa.Column('departement_code', sa.String(length=3), nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=False),
    sa.Column('population', sa.Integer(), nullable=True),
    sa.Column('postal_codes', postgresql.ARRAY(sa.String(length=5)), server_default='{}', nullable=False),
    sa.Column('boundary', Geometry(geometry_type='MULTIPOLYGON', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('point', Geometry(geometry_type='POINT', srid=4326, dimension=2, spatial_index=False, from_text='ST_GeomFromEWKT', name='geometry'), nullable=True),
    sa.Column('point_source', sa.Enum('mairie', 'surface', name='pointsource', native_enum=False, create_constraint=True, length=32), nullable=True),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_commune__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['departement_code'], ['departement.code'], name=op.f('fk_commune__departement_code__departement')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_commune'))
    )
    op.create_geospatial_index('ix_commune__boundary', 'commune', ['boundary'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index(op.f('ix_commune__collectivite_code'), 'commune', ['collectivite_code'], unique=False)
    op.create_index(op.f('ix_commune__departement_code'), 'commune', ['departement_code'], unique=False)
    op.create_geospatial_index('ix_commune__point', 'commune', ['point'], unique=False, postgresql_using='gist', postgresql_ops={})
    op.create_index('ix_commune__postal_codes', 'commune', ['postal_codes'], unique=False, postgresql_using='gin')
    op.create_index('ix_commune__search_name', 'commune', ['search_name'], unique=False, postgresql_ops={'search_name': 'text_pattern_ops'})
    op.create_index('ix_commune__search_name_trgm', 'commune', ['search_name'], unique=False, postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})
    op.create_table('organisation',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.Enum('crip', 'association', 'public_service', 'health', 'justice', 'police', 'other', name='organisationkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('website', sa.String(length=500), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('siren', sa.String(length=9), nullable=True),
    sa.Column('rna', sa.String(length=10), nullable=True),
    sa.Column('collectives', postgresql.ARRAY(sa.String(length=64)), server_default='{}', nullable=False),
    sa.Column('collectivite_code', sa.String(length=4), nullable=True),
    sa.Column('seat_commune_code', sa.String(length=5), nullable=True),
    sa.Column('verification', sa.Enum('unverified', 'verified', name='verification', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('demo', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('seed_key', sa.String(length=80), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind <> 'crip' OR collectivite_code IS NOT NULL", name=op.f('ck_organisation__crip_has_collectivite')),
    sa.ForeignKeyConstraint(['collectivite_code'], ['collectivite.code'], name=op.f('fk_organisation__collectivite_code__collectivite')),
    sa.ForeignKeyConstraint(['seat_commune_code'], ['commune.code'], name=op.f('fk_organisation__seat_commune_code__commune')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation')),
    sa.UniqueConstraint('seed_key', name=op.f('uq_organisation__seed_key'))
    )
    op.create_index(op.f('ix_organisation__kind'), 'organisation', ['kind'], unique=False)
    op.create_index('uq_organisation__crip_collectivite', 'organisation', ['collectivite_code'], unique=True, postgresql_where=sa.text("kind = 'crip'"))


def downgrade() -> None:
    op.drop_index('uq_organisation__crip_collectivite', table_name='organisation', postgresql_where=sa.text("kind = 'crip'"))
    op.drop_index(op.f('ix_organisation__kind'), table_name='organisation')
    op.drop_table('organisation')
    op.drop_index('ix_commune__search_name_trgm', table_name='commune', postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})
    op.drop_index('ix_commune__search_name', table_name='commune', postgresql_ops={'search_name': 'text_pattern_ops'})
    op.drop_index('ix_commune__postal_codes', table_name='commune', postgresql_using='gin')
    op.drop_geospatial_index('ix_commune__point', table_name='commune', postgresql_using='gist', column_name='point')
    op.drop_index(op.f('ix_commune__departement_code'), table_name='commune')
    op.drop_index(op.f('ix_commune__collectivite_code'), table_name='commune')
    op.drop_geospatial_index('ix_commune__boundary', table_name='commune', postgresql_using='gist', column_name='boundary')
    op.drop_geospatial_table('commune')
    op.drop_index(op.f('ix_departement__region_code'), table_name='departement')
    op.drop_geospatial_index('ix_departement__boundary', table_name='departement', postgresql_using='gist', column_name='boundary')
    op.drop_geospatial_table('departement')
    op.drop_index(op.f('ix_collectivite__region_code'), table_name='collectivite')
    op.drop_geospatial_index('ix_collectivite__boundary', table_name='collectivite', postgresql_using='gist', column_name='boundary')
    op.drop_geospatial_table('collectivite')
    op.drop_table('region')
    op.drop_table('reference_dataset')
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.execute("DROP EXTENSION IF EXISTS postgis")
