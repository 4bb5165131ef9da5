"""Profiles: traits with lineage and survivorship, computed traits, the timeline."""
