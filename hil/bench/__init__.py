"""The HIL bench: scenarios as TOML data, run against the real daemon process.

- ``hil.bench.scenario``: the scenario file's pydantic models (``load_scenario``).
- ``hil.bench.plant``: the site the meter sees (background + sensitivity x EV power).
- ``hil.bench.daemon``: the controller as a child process (``python -m controller run``).
- ``hil.bench.central``: a mosquitto broker and a lease publisher for CMC scenarios.
- ``hil.bench.runner``: wires the simulators, plays the timeline, records ``/api/status``.
- ``hil.bench.record``: what a run recorded (samples, limits, events), plain data.
- ``hil.bench.judge``: the criteria, each a pass/fail with what was measured.
- ``hil.bench.report``: ``report.md`` with plots (matplotlib) and ``summary.json``.
- ``hil.bench.cli``: ``gridwarden hil run SCENARIO... --report DIR [--jobs N]``.

The bench never imports the controller's runtime: the daemon under test is a separate
process started from a generated config, exactly as in the field. See docs/hil.md.
"""
