"""The phases of a turn (DESIGN.md section 2), each a plain function over domain models."""
