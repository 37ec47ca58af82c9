#!/bin/sh
# make run: until the Profile API server lands, ingest the bundled sample log into a
# `default` space under DATA and print one profile, so the whole engine is visible at once.
set -eu
DATA=${1:-./var}
CTL=./build/bin/profilectl
SAMPLE=tests/fixtures/events/sample.ndjson
if ! "$CTL" --data "$DATA" space list | grep -qx default; then
    "$CTL" --data "$DATA" space create default
fi
echo "== ingest $SAMPLE"
"$CTL" --data "$DATA" ingest default "$SAMPLE"
echo
echo "== profilectl --data $DATA inspect default user_id:user-42"
"$CTL" --data "$DATA" inspect default user_id:user-42
echo
echo "== profilectl --data $DATA check default"
"$CTL" --data "$DATA" check default
