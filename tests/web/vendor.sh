#!/bin/sh
# Re-vendor the web page's front-end libraries (services/gateway/web/vendor/) from the npm
# registry at the pinned versions below, with their licences. `make web-vendor` runs it;
# the page itself never fetches anything from outside the gateway.
set -eu
MARKED=18.3.0
DOMPURIFY=3.5.0
HIGHLIGHT=11.12.0
OUT="$(cd "$(dirname "$0")/../../services/gateway/web/vendor" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
npm pack --silent "marked@$MARKED" "dompurify@$DOMPURIFY" "@highlightjs/cdn-assets@$HIGHLIGHT" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
M="marked-$MARKED/package"; D="dompurify-$DOMPURIFY/package"; H="highlightjs-cdn-assets-$HIGHLIGHT/package"
cp "$M/lib/marked.umd.js" "$OUT/marked.umd.js"
cp "$M/LICENSE" "$OUT/marked.LICENSE.txt"
cp "$D/dist/purify.min.js" "$OUT/purify.min.js"
cp "$D/LICENSE" "$OUT/dompurify.LICENSE.txt"
cp "$H/highlight.min.js" "$OUT/highlight.min.js"
cp "$H/styles/github.min.css" "$OUT/highlight-github.min.css"
cp "$H/styles/github-dark.min.css" "$OUT/highlight-github-dark.min.css"
cp "$H/LICENSE" "$OUT/highlight.LICENSE.txt"
echo "vendored marked $MARKED, dompurify $DOMPURIFY, highlight.js $HIGHLIGHT into $OUT"
