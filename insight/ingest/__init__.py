"""Getting tracks in: library events, playback history and streaming sessions."""
