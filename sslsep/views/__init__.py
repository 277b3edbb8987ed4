"""Views of a clip from separated channels: pure builders and the Ray Data actor service."""

from sslsep.views.builders import KINDS, ViewSpec, active_channels, energy_db, plan_views, render_views

__all__ = ["KINDS", "ViewSpec", "active_channels", "energy_db", "plan_views", "render_views"]
