"""Side-by-side benchmarks: every figure next to the obvious alternative, one run.

Run ``python -m benchmarks --mode full`` (by hand; minutes) or ``--mode ci``
(seconds; the test suite runs it to prove it works).  Results go to JSON and a
Markdown table.  Benchmarks measure speed and memory; tests check behaviour.
"""
