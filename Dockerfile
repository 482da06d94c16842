# One image for every llm-cutover service in compose.yaml; the command picks the role
# (`cutover process`, `cutover dashboard`, `cutover collect`, `cutover simulate`, `cutover loadgen`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 CUTOVER_HOME=/var/lib/cutover
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cutover ./cutover
COPY collectors ./collectors
COPY processors ./processors
COPY dashboards ./dashboards
COPY simulator ./simulator
COPY docs ./docs
# Editable, so the dashboard finds docs/sql.md beside the packages.
RUN pip install -e . && useradd --system --home-dir /var/lib/cutover --create-home cutover
USER cutover
ENTRYPOINT ["cutover"]
CMD ["--help"]
