"""Patron: a self-hosted customer data platform with the CRM built in."""

__version__ = "0.1.0"
