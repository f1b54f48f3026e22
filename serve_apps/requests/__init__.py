"""The HTTP request of each task, by ``data.kind``: ``serve_apps/requests/<kind>.py`` declares its
``FORM`` (``serve_apps.requests.base.RequestForm``), found by the task's kind; nothing here lists
the kinds (``trainers.tasks`` does)."""

from __future__ import annotations

from importlib import import_module

from serve_apps.requests.base import RequestForm
from trainers.spec import ModelSpec
from trainers.tasks import task_for


def form_for(spec: ModelSpec) -> RequestForm:
    """The request form of the task ``spec``'s model was trained on."""
    return import_module(f"serve_apps.requests.{task_for(spec).kind}").FORM
