"""Getting data in: sources and write keys, the tracking API, the event log, imports."""
