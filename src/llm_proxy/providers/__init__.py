"""Provider metadata (registry), auth, and the built-in mock provider."""
