"""turnstream sinks."""
