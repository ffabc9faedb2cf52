"""Fixtures of the CMC link's tests: a real mosquitto on an ephemeral port."""

from tests.mqtt_broker import mosquitto_broker  # noqa: F401 (a fixture)
