"""insight: CLAP embeddings, search, mood and taste for Music Assistant, on a NATS bus."""

__version__ = "0.1.0"
