"""Task modules the benchmarked systems import (one per system).

They read their settings from ``BENCH_*`` environment variables that the
harness sets, so the consumer processes and the producer see the same
configuration. Every task reports through :func:`benchmarks.apps.common.record`.
"""
