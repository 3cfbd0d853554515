"""Domain models of DESIGN.md section 2: what the phases of a turn read and produce."""
