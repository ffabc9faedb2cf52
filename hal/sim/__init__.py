"""Simulators on the wire: a meter that is a real Modbus server, a breaker with visible state.

First-class implementations of the HAL protocols, selected by configuration (demo, bench)
and driven by tests; never test doubles that bypass the wire. Never imports ``controller``.
"""
