"""One settings class, read from the environment (prefix ``PATRON_``).

Every field is documented in the README; ``tests/core/test_settings.py`` fails when one is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PATRON_", extra="ignore")

    data_dir: Path = Field(
        Path("patron-data"), description="Folder for the embedded database and import reports."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Unset: a SQLite file `patron.db` in the data folder. "
        "PostgreSQL: `postgresql+psycopg://user@host/db`.",
    )
    host: str = Field("127.0.0.1", description="Interface `patron serve` listens on.")
    port: int = Field(8000, description="Port `patron serve` listens on.")
    web_workers: int = Field(
        1,
        ge=1,
        description="HTTP worker processes of `patron serve`, sharing the port. More than "
        "one lets request parsing and validation use several cores; the processing loop "
        "then runs in a process of its own.",
    )
    public_url: str | None = Field(
        None,
        description="URL browsers reach Patron at (for the snippet and CDN settings). "
        "Unset: derived from each request.",
    )
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "FULL",
        description="SQLite `synchronous` pragma. FULL makes every acknowledged commit "
        "survive power loss; NORMAL survives a process crash only.",
    )
    sqlite_busy_timeout_ms: int = Field(
        30000, description="How long a SQLite writer waits for the lock before failing."
    )
    max_future_skew_seconds: int = Field(
        3600,
        description="A message timestamp further than this in the future is clamped to "
        "the receive time and flagged.",
    )
    process_in_server: bool = Field(
        True,
        description="Run the processing loop inside `patron serve`. Turn off when "
        "separate `patron worker` processes do it.",
    )
    process_batch_size: int = Field(
        5000,
        description="Most events the processor reads per step. The running loop sizes its "
        "steps to hold the SQLite write lock about 50 ms while ingest writes and 250 ms "
        "while it does not; rebuilds take this many.",
    )
    process_idle_ms: int = Field(
        200, description="How long the processor sleeps when the log is drained."
    )
    session_days: int = Field(14, description="Lifetime of a UI login session, in days.")
    cookie_secure: bool = Field(
        False, description="Mark the UI session cookie Secure (serve behind HTTPS)."
    )
    log_level: str = Field("info", description="Log level of the server and worker.")
    phone_region: str = Field(
        "US",
        description="Region (ISO 3166 code) assumed for phone numbers written without a "
        "country code, when turning them into E.164 identifiers.",
    )
    email_provider_rules: bool = Field(
        False,
        description="Apply provider rules to email identifiers (Gmail ignores dots and "
        "`+tags`), so `j.doe+x@gmail.com` and `jdoe@gmail.com` are one person.",
    )
    supernode_limit: int = Field(
        20,
        ge=2,
        description="An identifier value that would join more than this many persons is "
        "blocked and listed for review instead of merging them all.",
    )
    match_auto_merge: float = Field(
        0.99,
        ge=0.5,
        le=1.0,
        description="Record linkage: persons who share no identifier but match with at "
        "least this probability are merged automatically (reason `match`, undoable).",
    )
    match_review: float = Field(
        0.8,
        ge=0.01,
        le=1.0,
        description="Record linkage: pairs matching with at least this probability (and "
        "below the auto-merge one) are queued for a person to accept or reject.",
    )
    match_interval_seconds: int = Field(
        3600,
        ge=0,
        description="How often the idle processor runs incremental record linkage over "
        "persons created or changed since the last run; 0 turns it off.",
    )
    analyze_interval_seconds: int = Field(
        3600,
        ge=0,
        description="How often the idle processor refreshes the database's statistics "
        "(ANALYZE), which its query planner needs to pick the indexes that keep lists fast "
        "as tables grow; 0 turns it off (PostgreSQL's autovacuum does it too).",
    )
    sla_check_seconds: float = Field(
        30,
        ge=0,
        description="How often the idle processor checks tickets for SLA warnings and "
        "breaches to announce (audit entries and events); 0 turns it off.",
    )
    workflow_interval_seconds: float = Field(
        2.0,
        ge=0,
        description="How often the processor runs the workflow runs that are due (rules' "
        "actions, retries); 0 turns it off (then `patron workflows run` does it).",
    )
    workflow_max_attempts: int = Field(
        8,
        ge=1,
        description="Attempts of a workflow run whose action keeps failing (a webhook "
        "answering 5xx, a timeout) before it is marked failed.",
    )
    workflow_retry_seconds: float = Field(
        30.0,
        ge=0,
        description="Wait before a failed workflow run's first retry; it doubles with every "
        "attempt, up to an hour.",
    )
    workflow_max_depth: int = Field(
        5,
        ge=1,
        description="Workflow runs fired by other runs' changes, in a chain, past which a "
        "run is recorded as `loop_stopped` instead of run (loops between rules end here).",
    )
    workflow_webhook_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a workflow webhook waits for the receiver's answer before the "
        "attempt counts as failed.",
    )
    form_rate_per_ip_minute: int = Field(
        10,
        ge=0,
        description="Web forms: submissions one client IP may make per minute (all forms "
        "together); more are refused with 429 and kept as rejected. 0 turns it off.",
    )
    form_rate_per_form_minute: int = Field(
        600,
        ge=0,
        description="Web forms: submissions one form accepts per minute from everyone; "
        "more are refused with 429 and kept as rejected. 0 turns it off.",
    )

    lead_assign_interval_seconds: float = Field(
        10,
        ge=0,
        description="How often the idle processor assigns waiting leads (unowned, lifecycle "
        "stage lead to salesqualifiedlead) to owners; 0 turns it off.",
    )
    lead_retrain_interval_seconds: int = Field(
        86400,
        ge=0,
        description="How often the predictive lead score model is trained again on the won "
        "and lost history, and everyone rescored with it; 0 turns it off.",
    )
    lead_rescore_interval_seconds: int = Field(
        86400,
        ge=0,
        description="How often every lead score is computed again, so that decaying points "
        "fade; 0 turns it off (rule changes and retraining still rescore everyone).",
    )

    def resolved_database_url(self) -> str:
        """The database URL in force: the setting, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'patron.db').resolve()}"

    def is_embedded(self) -> bool:
        """True when Patron runs on its own SQLite file rather than a configured database."""
        return self.database_url is None


def get_settings() -> Settings:
    """Settings as the environment says now (read once per command or server start)."""
    return Settings()
