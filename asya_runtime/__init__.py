"""asya_runtime: run a handler behind the Unix socket, speaking asya-abi/1."""

__version__ = "0.1.0"
