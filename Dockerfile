# The image deploy/ runs (`python -m server <role>`). Not built in CI here (no container
# runtime); tests/test_deploy.py checks that its user is the one the manifests run as.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY . /src
RUN pip install --no-cache-dir /src && rm -rf /src
USER 10001:10001
WORKDIR /srv
CMD ["python", "-m", "server", "web"]
