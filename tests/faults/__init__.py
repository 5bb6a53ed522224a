"""The fault suite: crashes, hangs, gateway trouble, fuzzed input, load, shutdown, security."""

__all__: list[str] = []
