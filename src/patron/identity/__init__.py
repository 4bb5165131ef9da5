"""Identity resolution: identifiers, the identity graph, merges and matching."""
