"""turnstream streams."""
