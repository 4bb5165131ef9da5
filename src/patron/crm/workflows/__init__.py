"""Workflow rules: when a CRM change matches a rule's trigger and conditions, run its
actions (assign an owner, set a field, create a task, add a note, send a webhook), durably,
once per change, with retries and a stop for loops."""
