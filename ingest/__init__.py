"""Writes the corpus: discover -> load -> chunk -> embed -> write (see DESIGN.md)."""
