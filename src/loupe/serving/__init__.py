"""Chat and serving on top of a saved Loupe model."""
