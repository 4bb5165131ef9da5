"""The CRM on the unified person: companies (fed by group calls), and later deals and more."""
