# Production image: gunicorn serves the site, the same image runs the Celery worker and beat
# (see docker-compose.yml). Every secret comes from the environment at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

# gettext: msgfmt for compilemessages below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
# The project itself has no importable packages (`packages = []`): `pip install .` installs
# only its dependencies, and the code runs from /app through PYTHONPATH.
COPY pyproject.toml /tmp/build/pyproject.toml
RUN pip install /tmp/build && rm -rf /tmp/build

RUN groupadd --system app \
    && useradd --system --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

WORKDIR /app
COPY . /app

# Translations and static files are built into the image. Production settings refuse to
# start without secrets, so these two commands get throwaway values used for the build only
# (nothing is encrypted, signed or stored with them; nothing connects to the database).
RUN DJANGO_PRODUCTION=1 \
    DJANGO_SECRET_KEY=build-only-not-secret \
    CARD_CODE_KEYS=vQyhM9uHCJ0cSq9_50XLgj7wu_-czOKG4H1J9TVzOOE= \
    STOCK_HASH_KEY=build-only-not-secret \
    DATABASE_URL=sqlite:////tmp/build.db \
    CELERY_BROKER_URL=memory:// \
    DJANGO_ALLOWED_HOSTS=localhost \
    REALNAME_APP_SECRET=build-only-not-secret \
    sh -c 'python manage.py compilemessages -v 0 && python manage.py collectstatic --noinput -v 0' \
    && rm -f /tmp/build.db \
    && mkdir -p /app/var /app/beat \
    && chown app:app /app/var /app/beat

# /app/var holds private uploads (PRIVATE_MEDIA_ROOT); mount a volume there. /app/beat: beat's
# schedule file, on a volume of beat's own (docker-compose.yml). A new volume takes the owner
# of the image's folder, so the app user can write both.
USER app
EXPOSE 8000
CMD ["gunicorn", "marketplace.wsgi:application", "--config", "python:marketplace.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
