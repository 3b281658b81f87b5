"""hueyq's benchmark suite (issue 9).

``python -m benchmarks run --backend sqlite|redis|all --workload NAME|all``
runs each workload against hueyq and, in the same run, against plain huey
configured the same way and (when the ``bench`` extra is installed) Celery,
RQ and Dramatiq, and prints ratios. Every process it starts lives in its own
process group and is stopped by pid at the end; every wait has a deadline.
See benchmarks/README.md.
"""
