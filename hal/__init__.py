"""gridwarden's hardware abstraction layer: the meter and the breaker, real and simulated.

Protocols (``hal.meter.Meter``, ``hal.breaker.Breaker``), drivers built from settings
(``hal.meter.build_meter``, ``hal.breaker.build_breaker``), register-map profiles as data
(``hal/profiles/*.toml``), simulators (``hal.sim``). ``hal`` never imports ``controller``;
third-party libraries are confined to one adapter module each (pymodbus: ``hal.modbus``,
gpiozero: ``hal.breaker``).
"""

import logging

# a library logs into the application's handlers; without any, stay quiet (no lastResort)
logging.getLogger(__name__).addHandler(logging.NullHandler())
