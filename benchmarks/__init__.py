"""pytest-benchmark suites of the fused ops and the report that renders their JSON.

``pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/<machine>/bench.json``
measures; ``python -m benchmarks.report`` renders ``BENCHMARKS.md``. See ``benchmarks/_runner.py`` and the modules it imports.
"""

__all__: list[str] = []
