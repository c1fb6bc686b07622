"""Settings of the staging stack: PostgreSQL from the environment, the `staff` app, no debug.

Layered over the starter project's base settings (made by `wagtail start` in the image).
"""

import os

from .base import *  # noqa: F401,F403
from .base import INSTALLED_APPS, STORAGES

DEBUG = False
# Staging only: a fixed key unless the stack passes one.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "staging-only-key-not-a-secret")
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = INSTALLED_APPS + ["staff"]
ROOT_URLCONF = "staging_urls"
WAGTAILADMIN_BASE_URL = os.environ.get("WAGTAILADMIN_BASE_URL", "http://localhost:8000")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "db"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "NAME": os.environ.get("PGDATABASE", "wagtail"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
    }
}

# No collectstatic in the image: plain storage, so templates render without a manifest.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
