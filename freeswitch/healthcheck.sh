#!/bin/sh
# Healthy when FreeSWITCH's core is ready and the event socket accepts the deployment's password.
# FREESWITCH_ESL_PASSWORD comes from the env file; ESL_HOST/ESL_PORT default to the compose example's.
exec fs_cli -H "${ESL_HOST:-172.28.0.10}" -P "${ESL_PORT:-8021}" -p "${FREESWITCH_ESL_PASSWORD:?}" -t 3000 -x status \
  | grep -q "is ready"
