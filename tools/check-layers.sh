#!/bin/sh
# Checks the layering of docs/architecture.md (Layers): a file may include project headers of
# its own layer or below only, and third-party headers stay in their home module.
set -eu
cd "$(dirname "$0")/.."
rank() {
    case "$1" in
    base) echo 0 ;; model) echo 1 ;; storage) echo 2 ;; resolve) echo 3 ;;
    service) echo 4 ;; http | cli) echo 5 ;; *) echo 99 ;;
    esac
}
fail=0
for f in src/*/*.c src/*/*.h; do
    [ -e "$f" ] || continue
    layer=$(echo "$f" | cut -d/ -f2)
    mine=$(rank "$layer")
    for h in $(sed -n 's/^#include "ps\/\([a-z_]*\)\.h".*/\1/p' "$f"); do
        impl=$(ls src/*/"$h".c 2>/dev/null | head -1)
        [ -n "$impl" ] || { echo "$f: includes ps/$h.h, which has no src/*/$h.c"; fail=1; continue; }
        theirs=$(rank "$(echo "$impl" | cut -d/ -f2)")
        if [ "$theirs" -gt "$mine" ]; then
            echo "$f: $layer includes ps/$h.h from a higher layer ($impl)"
            fail=1
        fi
    done
    case "$f" in src/storage/*) ;; *)
        grep -qE '^#include <(lmdb|msgpack|zstd)' "$f" && { echo "$f: LMDB/msgpack/zstd outside storage"; fail=1; } ;;
    esac
    case "$f" in src/model/*) ;; *)
        grep -qE '^#include <cjson/' "$f" && { echo "$f: cJSON outside model"; fail=1; } ;;
    esac
    case "$f" in src/model/rules.c) ;; *)
        grep -qE '^#include <pcre2' "$f" && { echo "$f: PCRE2 outside rules"; fail=1; } ;;
    esac
    case "$f" in src/service/auth.c | src/service/cursor.c) ;; *)
        grep -qE '^#include <openssl/' "$f" && { echo "$f: OpenSSL outside auth/cursor"; fail=1; } ;;
    esac
    case "$f" in src/http/*) ;; *)
        grep -qE '^#include <event2/' "$f" && { echo "$f: libevent outside http"; fail=1; } ;;
    esac
    case "$f" in src/service/repl.c) ;; *)
        grep -qE '^#include <nats/' "$f" && { echo "$f: NATS outside repl"; fail=1; } ;;
    esac
    # the programs reach storage through the service layer only (the read model, the space's
    # figures): one way in for the Profile API, profilectl and /metrics
    case "$f" in src/http/* | src/cli/*)
        if grep -qE '\bps_store_[a-z0-9_]+' "$f"; then
            grep -nE '\bps_store_[a-z0-9_]+' "$f" | sed "s|^|$f:|; s|$| (storage outside service)|"
            fail=1
        fi ;;
    esac
done
# comments and docs cite the project's own documents (docs/), not notes kept outside the
# repository: their names, and the numbered rules and questions in them
cited=$(grep -rnE '\b(SPEC|DESIGN|STYLE)(\.md)?\b[ :,.)]|\bSPEC [0-9]|\b[DQ][0-9]{1,2}\b' \
    src include tools tests fuzz docs README.md --include='*.c' --include='*.h' \
    --include='*.py' --include='*.sh' --include='*.md' --include='*.js' 2>/dev/null |
    grep -v '^tools/check-layers.sh:' || true)
if [ -n "$cited" ]; then
    echo "$cited" | sed 's/$/ (cites a document outside the repository)/'
    fail=1
fi
[ "$fail" -eq 0 ] && echo "layers ok"
exit "$fail"
