"""Desktop study: a year of EV energy unmet under an SCC scheme (report SDRC5 section 4).

Runs the device's own control core (``controller.core``) over profiles at their
resolution. Modules: ``profiles`` (CSV in/out), ``simulate`` (settings mapping and the
core loop), ``central`` (CMC headroom allocation, pure), ``metrics`` (Table 4 figures),
``synthetic`` (section 3 demand generator), ``sweep`` (Tables 22-26), ``output`` (CSV,
table, PNG), ``cli`` (``gridwarden study``). docs/study.md is the planner's guide.
"""
