"""CRM sales reports: aggregates over deals, their stage history and activities, computed
in SQL, each within what the caller may see, served as JSON and CSV."""
