"""Map tiles of the territories (geo/tiles.py builds and caches them), for the console's maps: served by
Maillage itself so that no third-party tile server learns where someone looks.

A tile's z/x/y say where someone looked, so nothing keeps them: the answer is `Cache-Control: no-store`
like every /v1 answer (no browser writes it to disk), the access log records the route's template,
never the path (api.logs.logged_path), and the server's cache is memory only (geo.tiles.TileCache).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from geo import tiles

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses

router = APIRouter(prefix="/v1", tags=["territories"])

MVT = "application/vnd.mapbox-vector-tile"


class VectorTile(Response):
    media_type = MVT


_LAST = 2**tiles.MAX_ZOOM - 1
Zoom = Annotated[int, Path(ge=0, le=tiles.MAX_ZOOM, description=f"Zoom level, 0 to {tiles.MAX_ZOOM}.")]
Column = Annotated[
    int, Path(ge=0, le=_LAST, description="The tile's column, from the west: 0 to 2^z − 1 (4095 at zoom 12).")
]
Row = Annotated[
    int, Path(ge=0, le=_LAST, description="The tile's row, from the north: 0 to 2^z − 1 (4095 at zoom 12).")
]

_TILE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The tile (Mapbox Vector Tile 2.1). Empty — zero bytes, a tile without layers — where "
        "no territory is (at sea, abroad).",
        "content": {MVT: {"schema": {"type": "string", "contentMediaType": MVT}}},
        "headers": {
            "Cache-Control": {
                "description": "`no-store`: a tile says where its viewer looked, so no cache keeps it.",
                "schema": {"type": "string", "enum": ["no-store"]},
            }
        },
    },
    **problem_responses(401, 403, 422),
}


@router.get(
    "/tiles/{z}/{x}/{y}.mvt", response_class=VectorTile, responses=_TILE, summary="A map tile of the territories"
)
async def territory_tile(principal: AnyRole, conn: ReaderDep, z: Zoom, x: Column, y: Row) -> VectorTile:
    """A vector tile of the French territories, for maps drawn without a third-party tile server (MapLibre:
    a `vector` source with `tiles: ["…/v1/tiles/{z}/{x}/{y}.mvt"]`, `maxzoom: 12`, the bearer token
    sent with each request; it overzooms beyond 12). XYZ scheme of Web Mercator (EPSG:3857), y from the
    north; 4,096 units across a tile, 64 beyond each edge.

    Layers, each feature with its `code` (INSEE) and `name` and nothing else (use `code` as the
    feature id: `promoteId`):

    - `regions`: the 18 régions, at every zoom;
    - `departements`: the 101 départements, at every zoom;
    - `communes`: from zoom 8.

    Boundaries are simplified to half a pixel of a 512-pixel tile below zoom 12. A layer without a
    feature in the tile is left out; a tile without any is an empty body (200, zero bytes). Column and
    row must each be less than 2^z (422 naming the one that is not). Answers are never to be cached
    (`Cache-Control: no-store`): a tile says where someone looked.
    """
    for name, value in (("x", x), ("y", y)):
        if value >= 2**z:
            raise InvalidParameter(name, "must be less than 2^z (a zoom z has 2^z columns and rows)", location="path")
    return VectorTile(await tiles.CACHE.tile(conn, z, x, y, viewer=principal.key))
