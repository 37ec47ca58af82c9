#!/bin/sh
# make run: on first start create a `default` space under DATA, load the bundled sample log
# and print a fresh access token (Profile API) and write key (Tracking API) once; then serve
# both APIs on 127.0.0.1:8080 in the foreground until Ctrl-C.
set -eu
DATA=${1:-./var}
LISTEN=${LISTEN:-127.0.0.1:8080}
CTL=./build/bin/profilectl
SAMPLE=tests/fixtures/events/sample.ndjson
if ! "$CTL" --data "$DATA" space list 2>/dev/null | grep -qx default; then
    "$CTL" --data "$DATA" space create default
    # the sample's times moved so that its last event is a minute old: every Profile API
    # route, /events included (a 14-day window by default), shows it
    python3 - "$SAMPLE" <<'EOF' | "$CTL" --data "$DATA" ingest default -
import datetime, json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def parse(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
last = max(parse(m["receivedAt"]) for m in lines)
shift = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1) - last
for m in lines:
    for k in ("timestamp", "receivedAt"):
        if k in m:
            t = parse(m[k]) + shift
            m[k] = t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)
    print(json.dumps(m))
EOF
fi
if [ -z "$("$CTL" --data "$DATA" token list default)" ]; then
    TOKEN=$("$CTL" --data "$DATA" token create default --name make-run)
    echo
    echo "Access token for space 'default' (shown once; only its hash is stored):"
    echo "  $TOKEN"
    echo "Read a profile:"
    echo "  curl -u $TOKEN: http://$LISTEN/v1/spaces/default/collections/users/profiles/user_id:user-42/traits"
    echo "  curl -u $TOKEN: http://$LISTEN/v1/spaces/default/collections/users/profiles/user_id:user-42/events"
    echo "Or look it up in the profile explorer: http://$LISTEN/ui/ (space default, user_id:user-42)"
fi
echo
echo "Another access token, whenever you need one (only its hash is stored):"
echo "  $CTL --data $DATA token create default --name NAME [--role read]"
if [ -z "$("$CTL" --data "$DATA" source list default)" ]; then
    KEY=$("$CTL" --data "$DATA" source create default --name make-run)
    echo
    echo "Write key of source 'make-run' in space 'default' (shown once; only its hash is stored):"
    echo "  $KEY"
    echo "Send an event (or point a Segment SDK's host at http://$LISTEN):"
    echo "  curl -u $KEY: -H 'Content-Type: application/json' -d '{\"userId\":\"user-42\",\"event\":\"Tried It\"}' http://$LISTEN/v1/track"
    echo
fi
exec ./build/bin/profiled --data "$DATA" --listen "$LISTEN"
