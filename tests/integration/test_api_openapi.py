"""The OpenAPI document matches the router: every route is documented, every documented
operation is served, and the document is well formed (validated as OpenAPI 3.1 when
``openapi-spec-validator`` is installed, else checked for structure and resolvable $refs)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ars_engine.api.app import create_app
from ars_engine.api.openapi import openapi_document
from ars_engine.config import Settings
from ars_engine.service import signing
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.runtime import Services
from ars_engine.store.db import Store

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    # The router and the document need no database: the store is never connected.
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    return create_app(Services.build(settings, store, ScenarioCatalog({})))


@pytest.fixture
def document() -> dict[str, Any]:
    return openapi_document()


# Served beside the API but not part of it: the operator console (HTML, docs/console.md) and the
# operations endpoints (/healthz, /readyz, /metrics: docs/observability.md).
NOT_API = ("/console", "/healthz", "/readyz", "/metrics")


def routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every API route; HEAD is aiohttp's automatic twin of each GET."""
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        assert path, f"route without a path: {route!r}"
        if path.startswith(NOT_API):
            continue
        out.add((route.method.lower(), path))
    return out


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method in METHODS}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for section in ("paths", "webhooks"):
        for path, item in document.get(section, {}).items():
            for method, operation in item.items():
                if method in METHODS:
                    yield method, path, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local $refs are used: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {ref} does not resolve"
        node = node[part]
    return node


def test_every_route_is_documented(app: web.Application, document: dict[str, Any]) -> None:
    missing = routed(app) - documented(document)
    assert not missing, f"routes without an operation in openapi.py: {sorted(missing)}"


def test_every_documented_operation_is_routed(app: web.Application,
                                              document: dict[str, Any]) -> None:
    extra = documented(document) - routed(app)
    assert not extra, f"operations no route serves: {sorted(extra)}"


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    if importlib.util.find_spec("openapi_spec_validator") is None:
        pytest.skip("openapi-spec-validator is not installed (structure is checked below)")
    from openapi_spec_validator import validate

    validate(document)


def test_the_document_is_well_formed(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]
    for ref in refs(document):
        resolve(document, ref)
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("responses"), f"{where} has no responses"
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), f"{where}: {status}"
            response = resolve(document, response["$ref"]) if "$ref" in response else response
            assert response.get("description"), f"{where} {status}: no description"
        # every {placeholder} of the path is a declared path parameter, and back
        declared = {resolve(document, p["$ref"])["name"] if "$ref" in p else p["name"]
                    for p in operation.get("parameters", [])
                    if (resolve(document, p["$ref"]) if "$ref" in p else p)["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), where


def test_every_route_but_the_document_requires_a_key(document: dict[str, Any]) -> None:
    assert document["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    for method, path, operation in operations(document):
        if path == "/v1/openapi.json" or path == "callEvent":
            assert operation["security"] == []
        else:
            assert "security" not in operation, f"{method} {path} overrides security"
            assert "401" in operation["responses"], f"{method} {path}: 401 not documented"


def test_create_call_documents_its_body_and_idempotency(document: dict[str, Any]) -> None:
    create = document["paths"]["/v1/calls"]["post"]
    params = [resolve(document, p["$ref"]) if "$ref" in p else p for p in create["parameters"]]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= params[0].items()
    body = resolve(document, create["requestBody"]["content"]["application/json"]["schema"]
                   ["$ref"])
    assert body["required"] == ["scenario", "to"]
    assert set(body["properties"]) == {"scenario", "to", "params", "callback_url",
                                       "schedule_at", "retry", "reference"}
    retry = resolve(document, body["properties"]["retry"]["$ref"])["properties"]
    assert (retry["max_attempts"]["minimum"], retry["max_attempts"]["maximum"]) == (1, 5)
    assert retry["retry_on"]["items"]["enum"] == ["busy", "no_answer"]
    assert (retry["interval_seconds"]["minimum"], retry["interval_seconds"]["maximum"]) == (
        10, 3600)
    assert {"201", "400", "401", "413", "422", "429"} <= set(create["responses"])
    for name in ("Call", "CallDetail", "Problem", "WebhookEvent"):
        assert name in document["components"]["schemas"]


def test_the_webhook_and_its_signature_are_documented(document: dict[str, Any]) -> None:
    hook = document["webhooks"]["callEvent"]["post"]
    payload = resolve(document, hook["requestBody"]["content"]["application/json"]["schema"]
                      ["$ref"])
    assert payload["required"] == ["id", "type", "created_at", "sequence", "call"]
    header = next(p for p in hook["parameters"] if p["in"] == "header")
    assert header["name"] == signing.HEADER == "X-ARS-Signature"
    assert "300 s" in header["description"] and "HMAC-SHA256" in header["description"]
    example = signing.sign("whsec_test", b'{"id":"evt_1"}', 1_767_225_600)
    assert re.fullmatch(header["schema"]["pattern"], example)


async def test_the_served_document_is_this_document(app: web.Application,
                                                    document: dict[str, Any]) -> None:
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v1/openapi.json")
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.json() == document
