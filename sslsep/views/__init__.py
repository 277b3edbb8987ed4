"""Views of a clip from separated channels: pure builders and the Ray Data actor service."""

from sslsep.views.builders import (KINDS, ViewDraw, ViewSpec, active_channels, draw_views, energy_db,
                                    plan_views, render_views, resolve_views)

__all__ = ["KINDS", "ViewDraw", "ViewSpec", "active_channels", "draw_views", "energy_db", "plan_views",
           "render_views", "resolve_views"]
