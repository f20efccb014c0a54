"""Logs, the gateway middleware; metrics and traces arrive with the observability issue."""
