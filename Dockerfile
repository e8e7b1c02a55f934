# genline's image: every Procfile process runs from it (compose.yaml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned dependencies first, in their own layer: a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Then the package itself (no extras: no test or dev tools in the image). The
# Procfile's commands read deploy/gunicorn.conf.py from /app.
COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 genline \
    && mkdir -p /app/var/outputs && chown -R genline /app/var

USER genline
ENV PORT=8000 \
    GENLINE_VAR_DIR=/app/var
EXPOSE 8000

CMD ["bash", "-c", "exec gunicorn -c deploy/gunicorn.conf.py \"web:create_app()\""]
