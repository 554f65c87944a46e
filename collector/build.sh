#!/usr/bin/env bash
# Build the otel-hardening collector once, into a cache outside the repo, and print its path.
#
#   BIN="$(collector/build.sh)"     # builds on first use (minutes), then returns at once
#
# The cache key is the sha256 of collector/builder-config.yaml, so editing the manifest gives a
# new binary and never reuses a stale one. Cache root: $OTELCOL_CACHE_DIR, else
# ${XDG_CACHE_HOME:-~/.cache}/otel-hardening. Only the binary path goes to stdout; progress and
# errors go to stderr. Needs Go and the Go module proxy; downloads are retried.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="$here/builder-config.yaml"
cache="${OTELCOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-hardening}"
attempts="${OTELCOL_BUILD_ATTEMPTS:-3}"

log() { printf 'collector/build.sh: %s\n' "$*" >&2; }
die() { printf 'collector/build.sh: ERROR: %s\n' "$*" >&2; exit 1; }

retry() {
  local n=1 delay=5
  until "$@"; do
    if (( n >= attempts )); then return 1; fi
    log "attempt $n/$attempts failed: $*; retrying in ${delay}s"
    sleep "$delay"; n=$((n + 1)); delay=$((delay * 2))
  done
}

[[ -f "$manifest" ]] || die "manifest not found: $manifest"
lock="$here/go.sum"
# go.sum pins the hash of every module in the build; it is part of the cache key.
hash="$( { cat "$manifest"; if [[ -f "$lock" ]]; then cat "$lock"; fi; } | sha256sum | cut -c1-16)"
out="$cache/otelcol-$hash"
bin="$out/otelcol-hardening"
if [[ -x "$bin" ]]; then
  printf '%s\n' "$bin"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.23 to build the collector)"
# The builder is released in lockstep with the core components: take its version from the manifest.
version="$(sed -n 's#.*go\.opentelemetry\.io/collector/receiver/otlpreceiver \(v[0-9.]*\).*#\1#p' "$manifest")"
[[ -n "$version" ]] || die "cannot read the collector version from $manifest"

mkdir -p "$cache/bin"
builder="$cache/bin/builder-$version"
if [[ ! -x "$builder" ]]; then
  log "installing the collector builder $version"
  tmpbin="$(mktemp -d "$cache/bin/.tmp.XXXXXX")"
  retry env GOBIN="$tmpbin" go install "go.opentelemetry.io/collector/cmd/builder@$version" >&2 \
    || die "could not install go.opentelemetry.io/collector/cmd/builder@$version (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
  mv "$tmpbin/builder" "$builder"
  rmdir "$tmpbin"
fi

work="$(mktemp -d "$cache/.build-$hash.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# The checked-in manifest has no output_path: the build goes to a scratch dir, then moves in whole.
sed "s#^dist:#dist:\n  output_path: $work/dist#" "$manifest" > "$work/builder-config.yaml"
# Seed the generated module with the checked-in go.sum: every module hash is then verified
# against it, with no checksum-database look-up (the proxy's sumdb mirror is incomplete).
mkdir -p "$work/dist"
if [[ -f "$lock" ]]; then cp "$lock" "$work/dist/go.sum"; fi
log "building the collector $version into $out (this takes several minutes the first time)"
start=$SECONDS
retry "$builder" --config "$work/builder-config.yaml" --ldflags "-s -w" >&2 \
  || die "the collector build failed (see the output above); manifest: $manifest"
[[ -x "$work/dist/otelcol-hardening" ]] || die "the builder finished but produced no binary in $work/dist"
mkdir -p "$out"
mv "$work/dist/otelcol-hardening" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
cp "$manifest" "$out/builder-config.yaml"
cp "$work/dist/go.sum" "$out/go.sum"
log "built in $((SECONDS - start))s: $bin"
printf '%s\n' "$bin"
