"""Flower's config file: Flower reads ./flowerconfig.py when it starts, and the
Procfile's processes run from the repository root.

Flower 2.x serves /metrics without authentication even when --basic-auth is
set (mher/flower#1342). Task names and worker names are operational detail, so
genline puts /metrics behind the same basic auth as every other Flower page.
/healthcheck stays open (it answers only "OK").
"""
import tornado.web
from flower.views import monitor

if not getattr(monitor.Metrics.get, "genline_authenticated", False):
    monitor.Metrics.get = tornado.web.authenticated(monitor.Metrics.get)
    monitor.Metrics.get.genline_authenticated = True
