"""HTTP surfaces: raw-ASGI hot paths and FastAPI routes for the rest."""
