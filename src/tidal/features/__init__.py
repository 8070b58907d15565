"""Feature store: entities, feature views, point-in-time correct offline retrieval."""
