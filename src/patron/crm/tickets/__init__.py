"""Support tickets: comments, SLA policies on business hours, breach detection."""
