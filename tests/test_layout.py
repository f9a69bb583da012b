"""The layout of DESIGN §1: packages resolve to this checkout, and imports run one way
(api → sync → directory → geo)."""

import ast
import importlib
from pathlib import Path

import pytest

from api.settings import REPO_ROOT

ORDER = ["api", "sync", "directory", "geo"]


@pytest.mark.parametrize("package", ORDER)
def test_packages_are_the_checkout_not_namesakes_from_pypi(package: str) -> None:
    module = importlib.import_module(package)
    assert Path(module.__file__ or "").resolve().is_relative_to(REPO_ROOT)


@pytest.mark.parametrize("package", ORDER)
def test_imports_only_point_right(package: str) -> None:
    forbidden = set(ORDER[: ORDER.index(package)])
    offenders = []
    for path in (REPO_ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names if name.split(".")[0] in forbidden]
    assert offenders == []


def test_domain_packages_know_nothing_of_http() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for package in ("directory", "geo")
        for path in (REPO_ROOT / package).rglob("*.py")
        if any(word in path.read_text() for word in ("fastapi", "starlette", "api.settings"))
    ]
    assert offenders == []


def test_data_folders_are_not_packages() -> None:
    assert not (REPO_ROOT / "openapi" / "__init__.py").exists()
    assert not (REPO_ROOT / "seeds" / "__init__.py").exists()
    assert (REPO_ROOT / "tests" / "__init__.py").exists()
