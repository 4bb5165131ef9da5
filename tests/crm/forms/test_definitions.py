"""Defining forms through the management API: what is stored, what is refused and why."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeUser, assert_error
from tests.crm.forms.conftest import DEMO_FORM, MakeForm


def with_fields(*fields: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {**copy.deepcopy(DEMO_FORM), "fields": list(fields), **more}


EMAIL = {"key": "email", "type": "email", "identifier": "email"}


def text(**spec: Any) -> dict[str, Any]:
    """A text field ``x`` with ``spec`` on top."""
    return {"key": "x", "type": "text", **spec}


def test_a_form_is_stored_with_defaults_public_url_and_audit(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    form = make_form(slug="Demo-2026")
    assert form["slug"] == "demo-2026"
    assert form["url"] == "http://testserver/f/demo-2026"
    assert form["enabled"] is True
    assert form["submit_label"] == "Submit"
    by_key = {f["key"]: f for f in form["fields"]}
    assert by_key["email"]["max_length"] == 320
    assert by_key["message"]["max_length"] == 2000
    assert by_key["plan"]["label"] == "plan"
    assert by_key["plan"]["default"] == "pro"
    assert by_key["company"]["trait"] == "company.name"
    assert [c["purpose"] for c in form["consents"]] == ["marketing", "terms"]
    assert client.get(f"/v1/forms/{form['id']}", headers=admin_headers).json() == form
    listed = client.get("/v1/forms", headers=admin_headers).json()
    assert [f["id"] for f in listed["items"]] == [form["id"]]
    audit = client.get(
        "/v1/audit",
        params={"record_type": "form", "record_id": form["id"]},
        headers=admin_headers,
    ).json()["items"]
    assert [a["action"] for a in audit] == ["create"]
    assert audit[0]["after"]["slug"] == "demo-2026"


def test_a_patch_is_checked_as_the_whole_form_and_audited(
    client: TestClient, make_form: MakeForm, admin_headers: dict[str, str]
) -> None:
    form = make_form()
    url = f"/v1/forms/{form['id']}"
    changed = client.patch(
        url, json={"enabled": False, "name": "Book a demo"}, headers=admin_headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["enabled"], changed.json()["name"]) == (False, "Book a demo")
    no_identifier = [{"key": "name", "type": "text", "trait": "name"}]
    assert_error(
        client.patch(url, json={"fields": no_identifier}, headers=admin_headers), 400, "fields"
    )
    audit = client.get(
        "/v1/audit", params={"record_type": "form", "record_id": form["id"]}, headers=admin_headers
    ).json()["items"]
    assert audit[0]["action"] == "update"
    assert audit[0]["before"] == {"enabled": True, "name": "Request a demo"}
    assert audit[0]["after"] == {"enabled": False, "name": "Book a demo"}


def test_the_slug_is_unique(
    make_form: MakeForm, client: TestClient, admin_headers: dict[str, str]
) -> None:
    make_form()
    again = client.post("/v1/forms", json={**DEMO_FORM, "name": "Other"}, headers=admin_headers)
    assert_error(again, 409, "slug")


def test_the_owner_rule_is_an_active_owner_or_an_existing_team(
    client: TestClient, make_user: MakeUser, admin_headers: dict[str, str]
) -> None:
    rep = make_user("sales")
    team = client.post("/v1/teams", json={"name": "Inbound"}, headers=admin_headers).json()
    owned = client.post("/v1/forms", json={**DEMO_FORM, "owner_id": rep.id}, headers=admin_headers)
    assert owned.status_code == 201, owned.text
    assert owned.json()["owner_id"] == rep.id
    teamed = {**DEMO_FORM, "slug": "team", "team_id": team["id"]}
    assert (
        client.post("/v1/forms", json=teamed, headers=admin_headers).json()["team_id"] == team["id"]
    )
    both = {**DEMO_FORM, "slug": "both", "owner_id": rep.id, "team_id": team["id"]}
    assert_error(client.post("/v1/forms", json=both, headers=admin_headers), 400, "team_id")
    nobody = {**DEMO_FORM, "slug": "nobody", "owner_id": "00000000-0000-0000-0000-000000000001"}
    assert_error(client.post("/v1/forms", json=nobody, headers=admin_headers), 400, "owner_id")
    no_team = {**DEMO_FORM, "slug": "noteam", "team_id": "00000000-0000-0000-0000-000000000001"}
    assert_error(client.post("/v1/forms", json=no_team, headers=admin_headers), 400, "team_id")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_fields({"key": "name", "type": "text", "trait": "name"}), "fields"),
        (with_fields(), "fields"),
        (with_fields(EMAIL, {"key": "email", "type": "text"}), "fields[1].key"),
        (with_fields(EMAIL, {"key": "Bad Key", "type": "text"}), "fields[1].key"),
        (with_fields(EMAIL, {"key": "utm_source", "type": "text"}), "fields[1].key"),
        (with_fields(EMAIL, {"key": "patron_website", "type": "text"}), "fields[1].key"),
        (with_fields(EMAIL, {"key": "x", "type": "file"}), "fields[1].type"),
        (with_fields(EMAIL, {"key": "x", "type": "select"}), "fields[1].options"),
        (with_fields(EMAIL, text(type="select", options=["a", "a"])), "fields[1].options"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "options": ["a"]}), "fields[1].options"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "max_length": 0}), "fields[1].max_length"),
        (with_fields(EMAIL, text(max_length=10**6)), "fields[1].max_length"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "default": "y"}), "fields[1].default"),
        (with_fields({"key": "e", "type": "text", "identifier": "email"}), "fields[0].type"),
        (with_fields({"key": "p", "type": "checkbox", "identifier": "crm_id"}), "fields[0].type"),
        (with_fields(text(identifier="anonymous_id")), "fields[0].identifier"),
        (with_fields(text(identifier="Not A Kind")), "fields[0].identifier"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "trait": "a b"}), "fields[1].trait"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "trait": "email"}), "fields[1].trait"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "trait": "a.b.c.d"}), "fields[1].trait"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "trait": "t", "identifier": "crm_id"}),
         "fields[1].identifier"),
        (with_fields(EMAIL, {"key": "x", "type": "text", "trait": "t"},
                     {"key": "y", "type": "text", "trait": "t"}), "fields[2].trait"),
        (with_fields(EMAIL, {**EMAIL, "key": "email2"}), "fields[1].identifier"),
        (with_fields(EMAIL, consents=[{"purpose": "Bad!", "label": "x"}]), "consents[0].purpose"),
        (with_fields(EMAIL, consents=[{"purpose": "a", "label": ""}]), "consents[0].label"),
        (with_fields(EMAIL, consents=[{"purpose": "a", "label": "x"}] * 2), "consents[1].purpose"),
        (with_fields(EMAIL, redirect_url="javascript:alert(1)"), "redirect_url"),
        (with_fields(EMAIL, redirect_url="/thanks"), "redirect_url"),
        (with_fields(EMAIL, slug="-bad"), "slug"),
        (with_fields(EMAIL, slug="a/b"), "slug"),
        (with_fields(EMAIL, name=" "), "name"),
        (with_fields(EMAIL, submit_label="x" * 101), "submit_label"),
    ],
)  # fmt: skip
def test_bad_definitions_are_refused_naming_the_field(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert_error(client.post("/v1/forms", json=body, headers=admin_headers), 400, field)
    assert client.get("/v1/forms", headers=admin_headers).json()["total"] == 0


def test_shapes_that_do_not_parse_are_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    unknown = {**DEMO_FORM, "colour": "red"}
    assert client.post("/v1/forms", json=unknown, headers=admin_headers).status_code == 422
    nul = {**DEMO_FORM, "name": "a\x00b"}
    assert client.post("/v1/forms", json=nul, headers=admin_headers).status_code == 422


def test_definitions_keep_markup_as_text(client: TestClient, admin_headers: dict[str, str]) -> None:
    script = "<script>alert('x')</script>"
    body = with_fields(
        {**EMAIL, "label": script, "placeholder": script},
        {"key": "pick", "type": "select", "options": [script, "ok"]},
        name=script,
        description=script,
        submit_label=script,
        success_message=script,
        consents=[{"purpose": "news", "label": script}],
    )
    form = client.post("/v1/forms", json=body, headers=admin_headers)
    assert form.status_code == 201, form.text
    assert form.json()["fields"][0]["label"] == script
    page = client.get("/f/demo")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    embed = client.get(f"/v1/forms/{form.json()['id']}/embed", headers=admin_headers)
    assert embed.headers["content-type"].startswith("text/plain")
    assert "<script>alert" not in embed.text
    assert embed.text.count("<script>") == 1  # the embed's own script, nothing else
