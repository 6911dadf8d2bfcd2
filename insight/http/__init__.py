"""HTTP bridge (the only package that imports aiohttp's server)."""
