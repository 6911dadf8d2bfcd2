"""Adapters that bring other systems' events onto the insight bus (Music Assistant first)."""
