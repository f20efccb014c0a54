"""Virtual keys and teams: their records, the store operations and the in-memory book."""
