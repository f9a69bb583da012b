"""The one pagination helper: signed cursors bound to their list, key shapes, limit + 1, links."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.requests import Request

from api.errors import InvalidParameter
from api.links import bind_base_url
from api.pagination import Cursors, Pagination


def _request(app: FastAPI, query: str = "limit=2&kind=crip") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/v1/things",
            "query_string": query.encode(),
            "headers": [(b"host", b"evil.example")],
            "app": app,
        }
    )


@pytest.fixture
def cursors(base_app: FastAPI) -> Cursors:
    return base_app.state.cursors


def test_a_page_fetches_one_more_row_and_links_the_next(base_app: FastAPI, cursors: Cursors) -> None:
    with bind_base_url("https://maillage.example.fr"):
        page = Pagination(_request(base_app), "things", 2, limit=2, cursor=None)
        assert (page.after, page.fetch) == (None, 3)
        rows, links = page.finish([("a", 1), ("b", 2), ("c", 3)], key=lambda row: [row[0], row[1]])
    assert rows == [("a", 1), ("b", 2)]
    assert [link["rel"] for link in links] == ["next"]
    href = links[0]["href"]
    assert href == page.next_url
    assert href.startswith("https://maillage.example.fr/v1/things?limit=2&kind=crip&cursor=")
    cursor = href.rpartition("cursor=")[2]
    following = Pagination(_request(base_app), "things", 2, limit=2, cursor=cursor)
    assert following.after == ("b", 2)
    last, links = following.finish([("c", 3)], key=lambda row: [row[0], row[1]])
    assert (last, links, following.next_url) == ([("c", 3)], [], None)


@pytest.mark.parametrize(
    ("key", "shape"),
    [("01", int), (7, str), (True, int), ([1, 2], 3), ("ab", 2), ({"a": 1}, 2)],
)
def test_a_key_of_the_wrong_shape_is_a_422_naming_the_cursor(
    base_app: FastAPI, cursors: Cursors, key: object, shape: type | int
) -> None:
    with pytest.raises(InvalidParameter) as refused:
        Pagination(_request(base_app), "things", shape, limit=2, cursor=cursors.encode("things", key))
    assert refused.value.errors == [{"in": "query", "name": "cursor", "message": "malformed cursor"}]


def test_a_cursor_of_another_list_or_forged_is_refused(base_app: FastAPI, cursors: Cursors) -> None:
    for cursor in (cursors.encode("other", 1), cursors.encode("things", 1)[:-2] + "xx", "%%%"):
        with pytest.raises(InvalidParameter):
            Pagination(_request(base_app), "things", int, limit=2, cursor=cursor)


def test_links_need_a_bound_base_url(base_app: FastAPI) -> None:
    page = Pagination(_request(base_app), "things", int, limit=1, cursor=None)
    with pytest.raises(RuntimeError):
        page.finish([1, 2], key=lambda row: row)
