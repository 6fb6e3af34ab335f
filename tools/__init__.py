"""Local development tools (not deployed): Azurite launcher, function host, simulator, demo."""
