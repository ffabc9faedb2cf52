"""CPO back-office links: how the controller sends the EV site's limit to the charge point
operator and reads back what the site draws.

The daemon uses ``build_cpo_link(config.cpo, site_id)`` and the ``CpoLink`` Protocol only:
``submit_limit(...)`` (never blocks, latest wins), ``snapshot()`` (a ``CpoSnapshot``;
``snapshot().demand()`` is the core's ``Demand`` input), ``run()`` (the link's task) and
``aclose()``. The bespoke REST API v1 is published in docs/api/cpo-openapi.yaml; aiohttp is
imported only by ``controller.cpo.rest``.
"""

from controller.cpo.errors import (
    CpoAuthError,
    CpoBadResponse,
    CpoError,
    CpoRejected,
    CpoServerError,
    CpoUnreachable,
)
from controller.cpo.factory import build_cpo_link, read_token
from controller.cpo.link import (
    ComplianceSample,
    CpoLink,
    CpoSnapshot,
    CpoTransport,
    PollingCpoLink,
)
from controller.cpo.models import Chargepoint, DemandReport, LimitAck, LimitRequest

__all__ = [
    "Chargepoint",
    "ComplianceSample",
    "CpoAuthError",
    "CpoBadResponse",
    "CpoError",
    "CpoLink",
    "CpoRejected",
    "CpoServerError",
    "CpoSnapshot",
    "CpoTransport",
    "CpoUnreachable",
    "DemandReport",
    "LimitAck",
    "LimitRequest",
    "PollingCpoLink",
    "build_cpo_link",
    "read_token",
]
