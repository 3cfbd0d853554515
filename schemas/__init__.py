"""turnstream schemas."""
