"""The official Open Referral HSDS 3.0 JSON schemas, read from `Settings().standards_dir` (by default
../shared/standards/hsds-3.0, CC BY-SA 4.0: never copied here), with formats checked (uuid, uri,
email, date-time). When they are missing a test fails, it never skips: an unchecked export is not a
checked one.

Full objects are checked against the schema of their table (schema/<name>.json, its `$ref`s to the
other tables resolved from the same folder); list items also against the compiled list schemas the
reference API names (compiled/<name>_list.json); pages against the reference API's `Page`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from api.settings import Settings

# The base URI the schemas are registered under (they carry no $id; their $refs are relative).
_BASE = "https://hsds.standards.invalid/3.0/"


def root(directory: Path | None = None) -> Path:
    folder = (directory or Settings().standards_dir) / "hsds-3.0"
    if not (folder / "schema" / "service.json").is_file():
        pytest.fail(
            f"the HSDS 3.0 schemas are missing from {folder} (set MAILLAGE_STANDARDS_DIR to the folder holding "
            "hsds-3.0/): exports cannot be checked"
        )
    return folder


@cache
def _validator(name: str) -> Any:
    """A validator for `schema/<name>.json`, `compiled/<name>.json`, or `page` (the reference API's)."""
    folder = root()

    def retrieve(uri: str) -> Any:
        relative = uri.removeprefix(_BASE)
        return json.loads((folder / relative).read_text())

    if name == "page":
        api = json.loads((folder / "openapi.json").read_text())
        schema = {
            **api["components"]["schemas"]["Page"],
            "required": ["total_items", "total_pages", "page_number", "size", "first_page", "last_page", "empty"],
        }
        schema["properties"] = {**schema["properties"], "contents": {"type": "array"}}
    else:
        schema = json.loads((folder / name).read_text())
        schema["$id"] = _BASE + name
    return jsonschema_rs.validator_for(schema, validate_formats=True, retriever=retrieve)


def errors(name: str, instance: Any) -> list[str]:
    """Every violation of `instance` against `name` (`schema/service.json`, `compiled/service_list.json`,
    `page`), each with its JSON path."""
    return [
        f"{'/'.join(str(p) for p in error.instance_path) or '/'}: {error.message}"
        for error in _validator(name).iter_errors(instance)
    ]


def check(name: str, instance: Any) -> None:
    found = errors(name, instance)
    assert found == [], f"{name}: {found[:10]}"


# What each HSDS endpoint answers with, as the reference API names them: the item's table schema, and
# the compiled list schema of list items.
TABLE = {
    "services": "schema/service.json",
    "service_at_locations": "schema/service_at_location.json",
    "organizations": "schema/organization.json",
    "taxonomies": "schema/taxonomy.json",
    "taxonomy_terms": "schema/taxonomy_term.json",
}
LIST = {
    "services": "compiled/service_list.json",
    "service_at_locations": "compiled/service_at_location_list.json",
    "organizations": "compiled/organization_list.json",
    "taxonomies": "schema/taxonomy.json",
    "taxonomy_terms": "schema/taxonomy_term.json",
}


def check_page(endpoint: str, body: Any) -> None:
    """A page of an HSDS list: its envelope, and each item as a list item and as a full object."""
    check("page", body)
    for item in body["contents"]:
        check(LIST[endpoint], item)
        check(TABLE[endpoint], item)
