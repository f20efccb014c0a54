"""Costs, the spend log (spooled to disk, written behind in batches) and its reports."""
