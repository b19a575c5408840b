"""UI helpers that work from timers and modal operators alike (no window in a timer's context)."""

from __future__ import annotations

import bpy


def status_text(text: str | None) -> None:
    """Show `text` in the status bar of every window (None: give the bar back to Blender). Works
    from timers, which have no window in their context."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        try:
            window.workspace.status_text_set(text)
        except (AttributeError, RuntimeError, TypeError):
            pass


def redraw_areas(area_types: set[str]) -> None:
    """Tag the areas of these types (e.g. {"PREFERENCES"}) in every window for redrawing."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in getattr(window.screen, "areas", ()):
            if area.type in area_types:
                area.tag_redraw()


class ModalTimer:
    """Mixin of a modal operator woken by a window-manager timer, so that modal() sees a background
    job end without waiting for user input (generate, check_generator)."""

    _timer = None

    def start_modal(self, context, interval: float) -> None:
        wm = context.window_manager
        self._timer = wm.event_timer_add(interval, window=context.window)
        wm.modal_handler_add(self)

    def remove_timer(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
