#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OpenAPI fuzzing of the moderation service with Schemathesis 4.
#
#   benchmarks/fuzz_api.sh [OUT]          OUT: where the reports go (default bench-out/fuzz)
#
# Starts `earmark serve --dev` on a throw-away home with a small generated catalog (three
# references made by FFmpeg), one decided scan, an owner policy, an exclusion and a webhook,
# so that some generated requests reach real resources; then runs
# `schemathesis run http://127.0.0.1:PORT/openapi.json` with the dev admin key, every phase
# (examples, coverage, fuzzing, stateful) and every default check, a bounded number of
# examples per operation. The ids of the seeded resources are offered to the path
# parameters half of the time (a Schemathesis dictionary), random values the other half.
#
# Exit status: 0 when no response was a server error (check `not_a_server_error`), whatever
# the other checks found (they are listed in OUT/summary.txt); 1 when any 5xx was seen.
#
# Environment: EXAMPLES (per operation, default 100), SEED (default 1), MAX_TIME (optional:
# a time budget instead, which Schemathesis fills by fuzzing again), EARMARK and
# SCHEMATHESIS (the commands; default: the ones in .venv/bin, else on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=$(realpath -m "${1:-bench-out/fuzz}")
EXAMPLES=${EXAMPLES:-100}
SEED=${SEED:-1}
MAX_TIME=${MAX_TIME:-}
pick() { if [[ -x .venv/bin/$1 ]]; then echo ".venv/bin/$1"; else command -v "$1"; fi; }
EARMARK=${EARMARK:-$(pick earmark)}
SCHEMATHESIS=${SCHEMATHESIS:-$(pick schemathesis)}
PY=$(dirname "$EARMARK")/python
[[ -x $PY ]] || PY=python3

WORK=$(mktemp -d -t earmark-fuzz-XXXXXX)
SERVER=""
cleanup() {
  if [[ -n $SERVER ]] && kill -0 "$SERVER" 2>/dev/null; then
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"
HOME_DIR=$WORK/home

# -- a small catalog: three generated references, two owners --------------------------------
mkdir -p "$WORK/refs"
for i in 1 2 3; do
  ffmpeg -nostdin -loglevel error -f lavfi -i "anoisesrc=d=30:c=pink:seed=$i:a=0.3" \
    -f lavfi -i "sine=f=$((220 * i)):d=30" -filter_complex amix=inputs=2 \
    -ar 22050 "$WORK/refs/ref$i.wav"
done
printf 'id,path,title,owner\nref1,refs/ref1.wav,One,label-a\nref2,refs/ref2.wav,Two,label-a\nref3,refs/ref3.wav,Three,label-b\n' \
  > "$WORK/catalog.csv"
"$EARMARK" catalog add --db "$HOME_DIR" --manifest "$WORK/catalog.csv" --jobs 1 2>/dev/null
ffmpeg -nostdin -loglevel error -ss 5 -t 12 -i "$WORK/refs/ref1.wav" "$WORK/clip.mp3"

# -- the service ----------------------------------------------------------------------------
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$EARMARK" serve --dev --db "$HOME_DIR" --port "$PORT" --workers 1 >"$OUT/serve.log" 2>&1 &
SERVER=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 120); do
  curl -fs "$URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "fuzz: earmark serve exited; see $OUT/serve.log" >&2; exit 2; }
  sleep 0.5
done
KEY=$(grep -o 'em_[A-Za-z0-9_-]*' "$OUT/serve.log" | head -1)
[[ -n $KEY ]] || { echo "fuzz: no admin key in $OUT/serve.log" >&2; exit 2; }
AUTH="Authorization: Bearer $KEY"

# -- seed resources whose ids the fuzzer may use ----------------------------------------------
SCAN=$(curl -fs -H "$AUTH" -F file=@"$WORK/clip.mp3" -F external_id=fuzz-seed -F territory=DE \
  "$URL/v1/scans" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
for _ in $(seq 120); do
  curl -fs -H "$AUTH" "$URL/v1/scans/$SCAN" | grep -q '"status":"done"' && break
  sleep 0.5
done
curl -fs -H "$AUTH" -H 'Content-Type: application/json' "$URL/v1/policies/label-a" -d \
  '{"rules": [{"name": "full copy", "when": {"min_query_match_ms": 10000}, "action": "block"}]}' >/dev/null
curl -fs -H "$AUTH" -H 'Content-Type: application/json' "$URL/v1/references/ref1/exclusions" \
  -d '{"start_ms": 0, "end_ms": 1000, "reason": "stock intro"}' >/dev/null
curl -fs -H "$AUTH" -H 'Content-Type: application/json' "$URL/v1/webhooks" \
  -d '{"url": "http://127.0.0.1:9/hook", "events": ["decision"]}' >/dev/null

cat > "$WORK/schemathesis.toml" <<EOF
[dictionaries.scans]
values = ["$SCAN"]
[dictionaries.references]
values = ["ref1", "ref2", "ref3"]
[dictionaries.owners]
values = ["label-a", "label-b", "platform"]
[dictionaries.ints]
values = [1]

[parameters]
"path.scan_id" = { dictionary = "scans", probability = 0.5 }
"path.reference_id" = { dictionary = "references", probability = 0.5 }
"path.owner" = { dictionary = "owners", probability = 0.5 }
"path.version" = { dictionary = "ints", probability = 0.5 }
"path.exclusion_id" = { dictionary = "ints", probability = 0.5 }
"path.webhook_id" = { dictionary = "ints", probability = 0.3 }
"path.review_id" = { dictionary = "ints", probability = 0.5 }
EOF
{ cat "$WORK/schemathesis.toml"; cat <<'EOF'

[[operations]]
include-name = "DELETE /v1/keys/{key_id}"
enabled = false

[[operations]]
include-name = "GET /v1/live/events/stream"
enabled = false
EOF
} > "$WORK/main.toml"

# -- fuzz -----------------------------------------------------------------------------------
# Every request carries the dev admin key, and Schemathesis feeds ids seen in responses
# (GET /v1/keys lists it) to later requests: DELETE /v1/keys/{key_id} would revoke it and
# leave every later operation at 401. That operation runs alone, last. The server-sent event
# stream (GET /v1/live/events/stream) never ends, so it is left out.
set +e
"$SCHEMATHESIS" --config-file "$WORK/main.toml" run "$URL/openapi.json" \
  -H "$AUTH" --max-examples "$EXAMPLES" --seed "$SEED" ${MAX_TIME:+--max-time "$MAX_TIME"} \
  --continue-on-failure --workers 1 --request-timeout 30 --generation-database none \
  --report junit,ndjson --report-dir "$OUT" --no-color \
  --suppress-health-check too_slow,filter_too_much 2>&1 | tee "$OUT/schemathesis.txt"
"$SCHEMATHESIS" --config-file "$WORK/schemathesis.toml" run "$URL/openapi.json" \
  -H "$AUTH" --max-examples "$EXAMPLES" --seed "$SEED" --continue-on-failure --workers 1 \
  --request-timeout 30 --generation-database none --include-name 'DELETE /v1/keys/{key_id}' \
  --report ndjson --report-dir "$OUT/keys" --no-color \
  2>&1 | tee "$OUT/schemathesis-keys.txt"
set -e

# -- summary: server errors decide the exit status ---------------------------------------------
"$PY" - "$OUT" <<'PY'
import collections, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
lines, server = [], 0
for name in ("schemathesis.txt", "schemathesis-keys.txt"):
    text = (out / name).read_text()
    server += len(re.findall(r"ST101 Server error", text))
    block = text.rsplit("SUMMARY", 1)[-1].split("Reports:", 1)[0]
    keep = [ln.strip() for ln in block.splitlines()
            if re.match(r"\s+(Selected|Tested|[✅❌⏭⚠]|\d+ generated)", ln)]
    lines.append(f"{name}: " + "; ".join(keep))
fails = collections.Counter()
for path in out.rglob("*.ndjson"):
    for m in re.finditer(r'"name":\s*"([a-z_]+)",\s*"status":\s*"failure"', path.read_text()):
        fails[m.group(1)] += 1
lines.append(f"failed check results (ndjson): {dict(fails) or 'none'}")
lines.append(f"server errors (5xx): {server + fails.get('not_a_server_error', 0)}")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if server or fails.get("not_a_server_error") else 0)
PY
