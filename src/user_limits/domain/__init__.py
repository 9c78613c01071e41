"""The pure core: events, the UserLimit read model and the projection rules. No I/O, no clock, no AWS."""

from user_limits.domain.events import UserLimitEvent
from user_limits.domain.model import UserLimit, export_dict
from user_limits.domain.projection import LimitNotFound, apply, creates

__all__ = ["LimitNotFound", "UserLimit", "UserLimitEvent", "apply", "creates", "export_dict"]
