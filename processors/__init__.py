"""turnstream processors."""
