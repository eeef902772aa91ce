# One image for the API, the workers, the migration step and Flower (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY nncore nncore
COPY service service
COPY worker worker
COPY trainyard trainyard
COPY migrations migrations
COPY examples examples
# editable: the migrations are read from /app/migrations next to the packages
RUN pip install --no-cache-dir -e ".[cluster,onnx]" \
    && useradd --create-home trainyard \
    && mkdir /artifacts && chown trainyard /artifacts
USER trainyard
EXPOSE 8000
CMD ["trainyard", "api", "--host", "0.0.0.0", "--port", "8000"]
