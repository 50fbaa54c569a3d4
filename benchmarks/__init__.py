"""Benchmarks for alfrd-daemon: the daemon side by side with the COPY limit and a naive peer.

Run `python -m benchmarks.run --help`; see BENCHMARKS.md for what each scenario measures.
"""
