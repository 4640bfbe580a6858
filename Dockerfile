# The sipagent orchestrator: render, run (ESL, media bridge, HTTP API, metrics), apply, validate.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY templates ./templates
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data --create-home sipagent \
    && rm -rf /src

USER sipagent
WORKDIR /data
ENTRYPOINT ["sipagent"]
CMD ["--help"]
