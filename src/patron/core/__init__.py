"""Shared foundations: settings, database, errors, ids, time and pagination."""
