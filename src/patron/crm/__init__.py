"""The CRM on the unified person: contacts' CRM fields, companies (also fed by group calls),
custom fields, pipelines and deals, activities and tasks, timelines, and who may see what."""
