"""Users, roles, API tokens, UI sessions and the audit log."""
