"""Every setting is documented in the README, with its environment variable name."""

from __future__ import annotations

from pathlib import Path

from patron.core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        f"PATRON_{name.upper()}"
        for name in Settings.model_fields
        if f"`PATRON_{name.upper()}`" not in text
    ]
    assert missing == [], f"settings missing from README.md: {missing}"


def test_every_setting_has_a_description() -> None:
    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []


def test_settings_come_from_the_environment(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("PATRON_PORT", "9123")
    monkeypatch.setenv("PATRON_DATABASE_URL", "postgresql://db/patron")
    settings = Settings()
    assert settings.port == 9123
    assert not settings.is_embedded()
    assert settings.resolved_database_url() == "postgresql://db/patron"
