"""Maintenance tools of the detkit repository (not part of the installed package)."""
