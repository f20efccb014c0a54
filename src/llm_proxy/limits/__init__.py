"""Admission: concurrency caps now; rate limits and budgets arrive with the keys issue."""
