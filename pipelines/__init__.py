"""Prefect flows: orchestration only (DVC decides what runs)."""
