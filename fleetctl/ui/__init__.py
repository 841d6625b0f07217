"""Everything that writes to the terminal."""
