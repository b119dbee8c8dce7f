"""Benchmarks: tools that time the core as the product runs it (never imported by the core)."""
