"""Typed keys for what the application holds."""

from __future__ import annotations

import jinja2
from aiohttp import web

from web.signin import FailedSignIns
from web.status import StatusReader

SOURCE: web.AppKey[StatusReader] = web.AppKey("source", StatusReader)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
SIGN_INS: web.AppKey[FailedSignIns] = web.AppKey("sign_ins", FailedSignIns)
