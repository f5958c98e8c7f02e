"""Intakes: each turns bytes from the outside into a stored raw mail."""
