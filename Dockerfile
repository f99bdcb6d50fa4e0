FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY agents agents
COPY topics topics
COPY state state
COPY api api
COPY driftline driftline
RUN pip install --no-cache-dir .
CMD ["driftline", "worker", "--loglevel", "info"]
