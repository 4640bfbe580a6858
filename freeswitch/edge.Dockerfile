# The Kamailio edge for a pool of FreeSWITCH nodes (docs/scaling.md): Debian's own Kamailio 5.6 packages, nothing
# else. Its configuration is not baked in: `sipagent render` writes it into the shared volume
# (kamailio/ beside nodes/<name>/), with the paths Kamailio reads named for that volume (--edge-conf-dir).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio kamailio-tls-modules \
 && rm -rf /var/lib/apt/lists/*
ENV SIPAGENT_EDGE_DIR=/etc/sipagent/freeswitch/kamailio
# healthy = the SIP listener accepts TCP (the edge answers carriers' OPTIONS itself once it does)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/${SIPAGENT_EDGE_HEALTH_HOST:-127.0.0.1}/${SIPAGENT_EDGE_HEALTH_PORT:-5060}"]
ENTRYPOINT ["sh", "-c", "exec kamailio -DD -E -f \"$SIPAGENT_EDGE_DIR/kamailio.cfg\" -m 128 -M 16"]
