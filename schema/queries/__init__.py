"""Typed SQL, one module per area, as constants with bound parameters."""
