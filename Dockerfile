# Slim runtime image with the embedded reference data; GDAL/PROJ come inside the Python wheels.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MZL_STORE_PATH=/var/lib/mzl/assessments.sqlite3

WORKDIR /srv/mzl
COPY pyproject.toml constraints.txt README.md ./
COPY app ./app
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /srv/mzl mzl \
    && mkdir -p /var/lib/mzl && chown mzl /var/lib/mzl
COPY zones ./zones
COPY geodata ./geodata

ENV MZL_DATASET_DIR=/srv/mzl/geodata MZL_ZONES_DIR=/srv/mzl/zones
USER mzl
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--http", "httptools", "--loop", "uvloop", "--workers", "2"]
