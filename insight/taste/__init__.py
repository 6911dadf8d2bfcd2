"""Taste profiles, recommendations, similar tracks and radio."""
