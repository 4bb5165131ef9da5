"""Application-wide behaviour: OpenAPI, unknown routes and methods answer in our error shape."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_openapi_lists_the_public_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/track", "/v1/batch", "/v1/events", "/v1/sources", "/v1/users"):
        assert path in spec["paths"], path
    assert "/v1/t" not in spec["paths"]  # the short aliases stay out of the docs


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()) >= {"code", "message"}
    wrong_method = client.get("/v1/track")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
