"""Config: the typed schema, loading with ${ENV} expansion, and `llm-proxy check`."""
