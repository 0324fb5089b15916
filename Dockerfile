# logtail-ws in a container: build in a Rust image, run as a non-root user in Debian slim.
#
#   docker build -t logtail-ws .
#   docker run --rm -p 8080:8080 -v /var/log:/var/log:ro \
#     -e LOGTAIL_FILE=/var/log/syslog -e LOGTAIL_TOKEN=change-me logtail-ws

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them (tests/needs is a
# dev-dependency by path: cargo reads its manifest even for a release build).
COPY Cargo.toml Cargo.lock ./
COPY tests/needs tests/needs
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && ./target/release/logtail-ws completions bash > /tmp/logtail-ws.bash \
    && ./target/release/logtail-ws man > /tmp/logtail-ws.1

FROM debian:bookworm-slim
# A fixed, unprivileged user; add it to the group that may read your logs with
# `docker run --group-add adm` (or the numeric gid) when they are not world-readable.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin logtail
COPY --from=build /src/target/release/logtail-ws /usr/local/bin/logtail-ws
COPY --from=build /tmp/logtail-ws.1 /usr/local/share/man/man1/logtail-ws.1
USER 10001:10001
EXPOSE 8080
# 0.0.0.0: inside a container 127.0.0.1 is the container's own loopback, which the
# published port (-p 8080:8080) cannot reach. That exposes the server to whatever can
# reach the port, so set LOGTAIL_TOKEN (or LOGTAIL_TOKEN_FILE with a mounted secret).
# The files to follow come from LOGTAIL_FILE or more arguments (`docker run … logtail-ws
# --file /var/log/app.log`).
ENV LOGTAIL_BIND=0.0.0.0 \
    LOGTAIL_PORT=8080
ENTRYPOINT ["/usr/local/bin/logtail-ws"]
CMD ["--bind", "0.0.0.0"]
