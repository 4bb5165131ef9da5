"""Web forms: definitions, the hosted public page and embeddable HTML, durable submissions
through the event log, spam protection, campaign attribution and lead creation."""
