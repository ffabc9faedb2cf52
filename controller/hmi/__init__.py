"""The local HMI and its JSON API (aiohttp server side lives in ``server.py`` only)."""
