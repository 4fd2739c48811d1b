#!/usr/bin/env bash
# Screenshot a page of the built book in headless Chromium, offline.
#
#   bash .ci/screenshot.sh PAGE OUT.png
#
# PAGE is a path inside the built site, e.g. book/intro.html or
# chapters/01-neural-codes/index.html. The site (default _build/html; set
# BOOK_HTML to use another) is served by `python3 -m http.server` on a free
# port of 127.0.0.1 for the duration of the shot, and Chromium resolves no
# other host name, so the page is seen as it is offline. From Chromium's
# network log the script lists every request the page made to another site
# (there should be none) and every local file it asked for in vain (404).
# Exits 1 if there is either. Needs chromium (Debian: apt-get install
# chromium). Extra Chromium flags: CHROMIUM_FLAGS.
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
  --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
  --window-size=1280,2000 --virtual-time-budget=10000 \
  --log-net-log="$tmp/netlog.json" --screenshot="$out" ${CHROMIUM_FLAGS:-} \
  "http://127.0.0.1:$port/$page" >"$tmp/chromium.log" 2>&1 || {
    cat "$tmp/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { cat "$tmp/chromium.log" >&2; echo "no screenshot" >&2; exit 1; }

echo "screenshot: $out"
python3 - "$tmp/netlog.json" "$tmp/server.log" "$port" <<'EOF'
import json, re, sys
netlog, server_log, port = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(netlog).read().rstrip().rstrip(",")
try:
    log = json.loads(text)
except ValueError:  # Chromium may exit before closing the events list
    log = json.loads(text + "]}")
start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
local = f"http://127.0.0.1:{port}"
page, browser = set(), set()
for e in log["events"]:
    p = e.get("params", {})
    if e["type"] == start and "url" in p:
        # the page's requests carry its origin as initiator; Chromium's own
        # background requests (updates, sign-in) carry none
        (page if p.get("initiator") == local else browser).add(p["url"])
off = sorted(u for u in page if not u.startswith((local + "/", "data:", "blob:")))
failed = sorted(set(re.findall(r'"GET (\S+) HTTP/[\d.]+" 404',
                               open(server_log).read())) - {"/favicon.ico"})
print(f"page requests: {len(page)}; to other sites: {len(off)}; local 404s: "
      f"{len(failed)} (Chromium's own background requests, blocked: "
      f"{sum(not u.startswith(local) for u in browser)})")
for u in off:
    print(f"  OFF-SITE {u}")
for u in failed:
    print(f"  404 {u}")
sys.exit(1 if off or failed else 0)
EOF
