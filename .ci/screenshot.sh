#!/usr/bin/env bash
# Screenshot a page of the built book in headless Chromium, offline.
#
#   bash .ci/screenshot.sh PAGE OUT.png
#
# PAGE is a path inside the built site, e.g. book/intro.html or
# chapters/01-neural-codes/index.html. The site (default _build/html; set
# BOOK_HTML to use another) is served by `python3 -m http.server` on a free
# port of 127.0.0.1 for the duration of the shot. Chromium's network log is
# kept and every request that left 127.0.0.1 is listed (there should be
# none), with the page's local requests that failed. Needs chromium
# (Debian: apt-get install chromium). Extra Chromium flags: CHROMIUM_FLAGS.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 PAGE OUT.png   (PAGE relative to the built site)" >&2
  exit 2
fi
page=${1#/}
out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
site=${BOOK_HTML:-_build/html}
if [ ! -f "$site/$page" ]; then
  echo "$site/$page not found (build the book first: bash .ci/book)" >&2
  exit 1
fi
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found (Debian: apt-get install chromium)" >&2
  exit 1
fi

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site" \
  >"$tmp/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" \
    2>/dev/null && break
  sleep 0.1
done

mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2086
"$browser" --headless --no-sandbox --disable-gpu --disable-quic \
  --no-first-run --disable-background-networking --disable-component-update \
  --disable-sync --hide-scrollbars --user-data-dir="$tmp/profile" \
  --window-size=1280,2000 --virtual-time-budget=10000 \
  --log-net-log="$tmp/netlog.json" --screenshot="$out" ${CHROMIUM_FLAGS:-} \
  "http://127.0.0.1:$port/$page" >"$tmp/chromium.log" 2>&1 || {
    cat "$tmp/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { cat "$tmp/chromium.log" >&2; echo "no screenshot" >&2; exit 1; }

python3 - "$tmp/netlog.json" "$tmp/server.log" "$port" <<'EOF'
import json, re, sys
netlog, server_log, port = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(netlog).read().rstrip().rstrip(",")
if not text.endswith("}"):
    text += "]}"  # Chromium may leave the log unterminated when it exits
log = json.loads(text)
start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
urls = sorted({e["params"]["url"] for e in log["events"]
               if e["type"] == start and "url" in e.get("params", {})})
local = f"http://127.0.0.1:{port}/"
off = [u for u in urls if not u.startswith(local)
       and not u.startswith(("data:", "blob:", "about:", "chrome:"))]
failed = sorted(set(re.findall(r'"GET (\S+) HTTP/[\d.]+" 404', open(server_log).read())))
print(f"requests: {len(urls)} to 127.0.0.1:{port}, {len(off)} elsewhere")
for u in off:
    print(f"  OFF-SITE {u}")
for u in failed:
    print(f"  404 {u}")
EOF
echo "screenshot: $out"
