"""Song paths, trait mixes and cluster playlists, with their SQLite store and service."""
