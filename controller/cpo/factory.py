"""Build the CPO link the configuration asks for (today: the bespoke REST API v1)."""

import time
from collections.abc import Callable

from controller.config import CpoConfig
from controller.cpo.link import CpoLink, PollingCpoLink
from controller.cpo.rest import RestTransport
from controller.errors import ConfigError


def read_token(config: CpoConfig) -> str:
    """The API token: ``token_file`` (first line, stripped) if given, else ``token``."""
    if config.token_file is not None:
        try:
            token = config.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                [f"cpo.token_file: cannot read {config.token_file}: {exc.strerror}"]
            ) from exc
        if not token:
            raise ConfigError([f"cpo.token_file: {config.token_file} is empty"])
        return token
    return config.token.get_secret_value()


def build_cpo_link(
    config: CpoConfig,
    site_id: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> CpoLink:
    """A ``CpoLink`` to ``config.base_url`` for ``site_id``. Raises ``ConfigError`` when the
    token file cannot be read or the CA bundle cannot be loaded; opens no connection."""
    token = read_token(config)
    try:
        transport = RestTransport(
            config.base_url,
            site_id,
            token,
            ca_file=config.ca_file,
            connect_timeout_s=config.connect_timeout_s,
            total_timeout_s=config.total_timeout_s,
        )
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError([f"cpo.ca_file: cannot load {config.ca_file}: {exc}"]) from exc
    return PollingCpoLink(
        transport,
        name=f"CPO {config.base_url}",
        demand_poll_s=config.demand_poll_s,
        unreachable_after_s=config.unreachable_after_s,
        clock=clock,
        wall_clock=wall_clock,
    )
