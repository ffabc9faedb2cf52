"""The central platform's share-out of constraint headroom among EV sites (CMC).

Pure: numbers in, numbers out; no I/O, no clocks, no numpy — the CMC central simulator
may reuse it as is. One call per control period:

    limits_kw = allocate(headroom_kw, sensitivity, requests_kw, site_max_kw, policy)

``headroom_kw[j]``: what constraint j can still carry (limit - margin - background, kW at
the constraint; nan if unknown). ``sensitivity[j][k]``: share of site k's power seen at
constraint j. ``requests_kw[k]``: what site k wants now. The result is each site's EV limit
(kW), never above its maximum, never negative.

Policies:

- ``pro-rata``: at each constraint every site with a share in it is granted the same
  fraction of its request, the fraction that fills the headroom; a site's limit is the
  smallest grant over the constraints it loads. One pass: headroom that one constraint
  frees because another binds harder is not handed round again (conservative).
- ``lifo``: last in, first out. Sites are served in connection order (the order given);
  each takes what it asks for, as far as every constraint it loads still has room, so the
  most recently connected sites are curtailed first.
"""

import math
from collections.abc import Sequence

PRO_RATA = "pro-rata"
LIFO = "lifo"
POLICIES = (PRO_RATA, LIFO)


def allocate(
    headroom_kw: Sequence[float],
    sensitivity: Sequence[Sequence[float]],
    requests_kw: Sequence[float],
    site_max_kw: Sequence[float],
    policy: str = PRO_RATA,
) -> list[float]:
    """Each site's EV limit (kW) for one period; see the module docstring."""
    n_sites = len(requests_kw)
    wants = [min(max(0.0, r), site_max_kw[k]) for k, r in enumerate(requests_kw)]
    if policy == PRO_RATA:
        limits = list(site_max_kw)
        for j, h in enumerate(headroom_kw):
            row = sensitivity[j]
            load = 0.0
            for k in range(n_sites):
                if row[k] > 0:
                    load += row[k] * wants[k]
            if math.isnan(h):
                continue  # unknown: the caller withholds the lease of these sites
            if h <= 0:
                fraction = 0.0
            elif load <= h:
                continue
            else:
                fraction = h / load
            for k in range(n_sites):
                if row[k] > 0:
                    limits[k] = min(limits[k], fraction * wants[k])
        return limits
    if policy == LIFO:
        room = [h if not math.isnan(h) else math.inf for h in headroom_kw]
        limits = [0.0] * n_sites
        for k in range(n_sites):
            grant = wants[k]
            for j, row in enumerate(sensitivity):
                if row[k] > 0:
                    grant = min(grant, max(0.0, room[j]) / row[k])
            limits[k] = grant
            for j, row in enumerate(sensitivity):
                if row[k] > 0:
                    room[j] -= row[k] * grant
        return limits
    raise ValueError("unknown allocation policy %r" % policy)
