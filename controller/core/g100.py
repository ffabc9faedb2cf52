"""Excursion supervision in the style of ENA EREC G100 Issue 2, for CLM and TCC sites.

An excursion is the constraint above the agreed capacity. One lasting ``stage2_s`` counts
as a stage-2 excursion; a lockout follows when one excursion lasts
``single_excursion_lockout_s``, or ``window_max_stage2`` stage-2 excursions fall within
``window_s``, or more than ``day_max_stage2`` within ``day_window_s``. During a lockout the
EV limit is held at the fail-safe value until an installer reset or ``lockout_s`` passes.

Pure: times are the caller's monotonic seconds. Persisted as ages (seconds before the
moment of persisting) because a monotonic clock restarts at boot; the time the controller
was down is not counted, which keeps windows and lockouts open longer, never shorter.
"""

from controller.core.settings import G100Settings


class G100Tracker:
    __slots__ = (
        "excursion_since",
        "excursion_stage2_counted",
        "lockout_reason",
        "lockout_until",
        "settings",
        "stage2_times",
    )

    def __init__(self, settings: G100Settings) -> None:
        self.settings = settings
        self.excursion_since: float | None = None
        self.excursion_stage2_counted = False
        self.stage2_times: list[float] = []
        self.lockout_until: float | None = None
        self.lockout_reason = ""

    def locked_out(self, now: float) -> bool:
        return self.lockout_until is not None and now < self.lockout_until

    def active(self) -> bool:
        """Clocks are running (an excursion, a lockout, stage-2 excursions in the window)."""
        return (
            self.excursion_since is not None
            or self.lockout_until is not None
            or bool(self.stage2_times)
        )

    def expire(self, now: float) -> "list[tuple[str, str]]":
        """End a lockout whose time is up (every period, whether the meter answers or not)."""
        if self.lockout_until is not None and now >= self.lockout_until:
            self.lockout_until = None
            return [("G100_LOCKOUT_END", "G100 lockout ended after %d s" % self.settings.lockout_s)]
        return []

    def update(self, over: bool, now: float, prev: float) -> "list[tuple[str, str]]":
        """Feed whether the constraint is above the agreed capacity now (``prev`` is the
        previous period's time: an excursion first seen now may have begun just after it).
        Returns the transitions as ``(code, message)``: G100_STAGE2, G100_LOCKOUT."""
        s = self.settings
        out: list[tuple[str, str]] = []
        horizon = now - s.day_window_s
        while self.stage2_times and self.stage2_times[0] <= horizon:
            self.stage2_times.pop(0)
        if not over:
            self.excursion_since = None
            self.excursion_stage2_counted = False
            return out
        if self.excursion_since is None:
            self.excursion_since = prev
        lasted = now - self.excursion_since
        if lasted >= s.stage2_s and not self.excursion_stage2_counted:
            self.excursion_stage2_counted = True
            self.stage2_times.append(now)
            out.append(("G100_STAGE2", "stage-2 excursion: over capacity for %d s" % lasted))
            in_window = 0
            for t in self.stage2_times:
                if t > now - s.window_s:
                    in_window += 1
            if in_window >= s.window_max_stage2:
                self._lock(now, "%d stage-2 excursions within %d s" % (in_window, s.window_s), out)
            elif len(self.stage2_times) > s.day_max_stage2:
                self._lock(
                    now,
                    "%d stage-2 excursions within %d s" % (len(self.stage2_times), s.day_window_s),
                    out,
                )
        if lasted >= s.single_excursion_lockout_s:
            self._lock(now, "one excursion lasted %d s" % lasted, out)
        return out

    def _lock(self, now: float, why: str, out: "list[tuple[str, str]]") -> None:
        if self.locked_out(now):
            return
        self.lockout_until = now + self.settings.lockout_s
        self.lockout_reason = why
        out.append(("G100_LOCKOUT", "G100 lockout: " + why))

    def reset(self) -> bool:
        """Installer reset: ends a lockout. Returns whether there was one."""
        was = self.lockout_until is not None
        self.lockout_until = None
        self.lockout_reason = ""
        return was

    def to_dict(self, now: float) -> "dict[str, object]":
        return {
            "excursion_age_s": (
                None if self.excursion_since is None else round(now - self.excursion_since, 3)
            ),
            "stage2_ages_s": [round(now - t, 3) for t in self.stage2_times],
            "lockout_remaining_s": (
                None if self.lockout_until is None else round(self.lockout_until - now, 3)
            ),
            "lockout_reason": self.lockout_reason,
        }

    def load(self, d: "dict[str, object]", now: float) -> None:
        ages = d.get("stage2_ages_s") or []
        self.stage2_times = sorted(now - float(a) for a in ages)  # type: ignore[attr-defined]
        remaining = d.get("lockout_remaining_s")
        self.lockout_until = None if remaining is None else now + float(remaining)  # type: ignore[arg-type]
        self.lockout_reason = str(d.get("lockout_reason") or "")
        age = d.get("excursion_age_s")
        if isinstance(age, (int, float)) and age >= 0:
            # the excursion in progress keeps its age, but counted again as stage 2 only if
            # it had not been yet: assume it had (the conservative side is a shorter window)
            self.excursion_since = now - float(age)
            self.excursion_stage2_counted = age >= self.settings.stage2_s

    def key(self) -> "tuple[object, ...]":
        """What persisting depends on, in absolute times (ages change every tick)."""
        return (tuple(self.stage2_times), self.lockout_until)
