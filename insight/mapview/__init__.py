"""The 2-D library map: a landmark layout (numpy only) and the service that keeps it."""
