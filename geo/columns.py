"""Column helpers shared by every package's tables, and the constraint naming convention.

One home, in the leaf package, so geo, directory and sync declare columns the same way: statuses as
VARCHAR + CHECK, timestamps with time zone, server-side defaults, geometries without implicit indexes.
"""

from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

SRID = 4326

# Set once, before any table is declared, so every constraint has a predictable name in migrations.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_N_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def enum_column(
    enum: type[StrEnum], *, server_default: StrEnum | None = None, constraint: str | None = None, **kwargs: Any
) -> Any:
    """A StrEnum stored as VARCHAR + CHECK: adding a value is a CHECK change, not an ALTER TYPE.
    `constraint` names the CHECK when a table has two columns of the same enum."""
    if server_default is not None:
        kwargs["sa_column_kwargs"] = {"server_default": server_default.value}
    return Field(
        sa_type=sa.Enum(
            enum,
            native_enum=False,
            create_constraint=True,
            length=32,
            values_callable=lambda members: [m.value for m in members],
            name=constraint or enum.__name__.lower(),
            validate_strings=True,
        ),
        **kwargs,
    )


def geometry(kind: str, *, nullable: bool = True) -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(Geometry(kind, srid=SRID, spatial_index=False), nullable=nullable),
    )


def created_at() -> Any:
    return Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )


def version_column() -> Any:
    """Row version for optimistic concurrency: the ETag, checked by a conditional UPDATE."""
    return Field(default=1, sa_column_kwargs={"server_default": "1", "nullable": False})


def updated_at() -> Any:
    return Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "onupdate": sa.func.now(), "nullable": False},
    )


def text_array(length: int) -> Any:
    return Field(
        default_factory=list,
        sa_column=sa.Column(ARRAY(sa.String(length)), nullable=False, server_default="{}"),
    )


def timestamp(**kwargs: Any) -> Any:
    return Field(default=None, sa_type=sa.DateTime(timezone=True), **kwargs)
