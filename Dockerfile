# The one image for every service of the pipeline: `mediation <command>`.
#
#   docker build -t mediation:local .
#   docker run --rm mediation:local --help
#
# The image installs what production needs: the project without extras
# (`local` and `reports` are for the dev stack and the peak report's charts).
# It is installed in editable mode from /app: the package data (the schema
# migrations in sql/, the alerting files in deploy/ and the runbook
# docs/operations.md, which the gate checks) is read through the links in
# mediation/resources/, which point at those folders next to the packages.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MEDIATION_DATA_DIR=/var/lib/mediation

WORKDIR /app

COPY pyproject.toml README.md LICENSE ./
COPY sql ./sql
COPY deploy ./deploy
COPY docs/operations.md ./docs/operations.md
COPY mediation ./mediation
COPY gateway ./gateway
COPY dataflows ./dataflows
COPY sinks ./sinks
COPY storage ./storage
COPY replay ./replay

RUN pip install -e . \
    && mediation --help > /dev/null


# Unprivileged user; a named volume mounted on /recovery starts out owned by it.
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin mediation \
    && mkdir -p /recovery "$MEDIATION_DATA_DIR" \
    && chown mediation:mediation /recovery "$MEDIATION_DATA_DIR"

USER mediation

EXPOSE 8080 8081 2101

ENTRYPOINT ["mediation"]
CMD ["--help"]
