"""The command line: creating commands print one JSON object with --json."""

from __future__ import annotations

from typer.testing import CliRunner

from patron.cli import app
from tests.conftest import run_json


def test_create_commands_print_one_json_object(cli: CliRunner) -> None:
    source = run_json(cli, "sources", "create", "Website", "--kind", "browser")
    assert source["name"] == "Website"
    assert str(source["write_key"]).startswith("pk_")
    user = run_json(cli, "users", "create", "Ops@Example.com", "--role", "admin")
    assert user == {"email": "ops@example.com", "id": user["id"], "role": "admin"}
    token = run_json(cli, "tokens", "create", "ops@example.com")
    assert str(token["token"]).startswith("pt_")


def test_cli_errors_are_clear_and_exit_non_zero(cli: CliRunner) -> None:
    bad_role = cli.invoke(app, ["users", "create", "a@example.com", "--role", "king"])
    assert bad_role.exit_code == 1
    assert "unknown role" in bad_role.output
    cli.invoke(app, ["sources", "create", "Twice"])
    twice = cli.invoke(app, ["sources", "create", "Twice"])
    assert twice.exit_code == 1
    assert "already exists" in twice.output
    nobody = cli.invoke(app, ["tokens", "create", "nobody@example.com"])
    assert nobody.exit_code == 1
    assert "no user" in nobody.output
