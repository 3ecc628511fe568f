"""Notifications about incidents. Notifiers only render timeline events; they never sit on the
containment path: events are queued and delivered by a background thread (see dispatcher.py)."""
