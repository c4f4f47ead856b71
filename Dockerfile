# The jobdock server's image (docs/deploy.md), built from wheels in dist/:
#
#   python3 -m pip wheel . -w dist      # jobdock's wheel and its dependencies'
#   docker build -t jobdock .
#   docker run -d -p 8080:8080 -v jobdock:/var/lib/jobdock jobdock
#
# Nothing is downloaded while building (pip reads only dist/), so it builds
# where no package index can be reached. BASE is any image with Python 3.11
# or later and its venv module.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

COPY dist/*.whl /tmp/wheels/
RUN python3 -m venv /opt/jobdock \
    && /opt/jobdock/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels jobdock \
    && rm -rf /tmp/wheels \
    && mkdir -p /var/lib/jobdock /var/lib/jobdock-homes

# Beyond loopback a server must authenticate: tokens (`jobdock token create`
# in the container). It runs as root in the container so that each user's
# jobs run as a uid of their own (docs/security.md, "Job identities").
ENV PATH=/opt/jobdock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    JOBDOCK_HOME=/var/lib/jobdock \
    JOBDOCK_JOB_HOMES=/var/lib/jobdock-homes \
    JOBDOCK_HOST=0.0.0.0 \
    JOBDOCK_PORT=8080 \
    JOBDOCK_TOKENS=true \
    JOBDOCK_LOG_FORMAT=json
VOLUME ["/var/lib/jobdock"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['JOBDOCK_PORT'], timeout=4)"]
ENTRYPOINT ["jobdock"]
CMD ["serve"]
