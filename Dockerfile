# xrserve: the server, its built-in models and the WebXR client, running as a non-root user.
# Built with the same `make install` the tests use, minus what only the tests need (Chromium,
# a PostgreSQL server). docs/scaling.md says how to run it, and what was and was not checked:
# no Docker engine runs on the machines this was written on, so the image was linted
# (hadolint), not built.
FROM python:3.11-slim-bookworm

# make and a C++ toolchain build llama-cpp-python from source (about 6 minutes on 2 cores);
# node and npm build the web client; espeak-ng and ffmpeg are used at run time. Debian's versions
# are not pinned: a point release replaces them in the archive, and a pin would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make cmake g++ git nodejs npm espeak-ng ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/xrserve
# torch first, the CPU build (PyPI's default build for x86_64 carries CUDA: gigabytes for nothing here)
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY . .
RUN make install APT_TOOLS="espeak-ng ffmpeg" WITH_POSTGRES=0 \
    && rm -rf node_modules /root/.cache \
    && useradd --create-home --uid 10001 xrserve \
    && mkdir -p /data \
    && chown xrserve /data

USER 10001
ENV PATH=/opt/xrserve/.venv/bin:$PATH
VOLUME ["/data"]
EXPOSE 8000
# binding 0.0.0.0 without TLS prints a warning: mount a certificate and add
# --tls-cert /certs/server.pem --tls-key /certs/server-key.pem (see `xrserve certs dev`)
CMD ["xrserve", "serve", "--host", "0.0.0.0", "--port", "8000", "--data-dir", "/data"]
