#!/usr/bin/env bash
# Build one of the stack's Go components once, into a cache outside the repo, and print its binary.
#
#   BIN="$(tools/build-component.sh jaeger)"   # jaeger | victorialogs | docker-compose | jsonnet
#
# Each component is pinned (otel_hardening/stack/components.tsv) to a module version the Go module
# proxy reachable here serves; `go install pkg@version` does not work for most of them (the proxy
# refuses version lists, and some modules have replace directives), so each is built from a wrapper
# module. The cache key is the name and version; cache root as in
# collector/build.sh: $OTELCOL_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/otel-hardening.
# Only the binary path goes to stdout; progress and errors go to stderr.
set -euo pipefail

name="${1:-}"
cache="${OTELCOL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-hardening}"
attempts="${OTELCOL_BUILD_ATTEMPTS:-3}"

log() { printf 'tools/build-component.sh %s: %s\n' "$name" "$*" >&2; }
die() { printf 'tools/build-component.sh %s: ERROR: %s\n' "$name" "$*" >&2; exit 1; }
retry() {
  local n=1 delay=5
  until "$@"; do
    if (( n >= attempts )); then return 1; fi
    log "attempt $n/$attempts failed: $*; retrying in ${delay}s"
    sleep "$delay"; n=$((n + 1)); delay=$((delay * 2))
  done
}

# The pins live in otel_hardening/stack/components.tsv, which the stack reads too.
table="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/otel_hardening/stack/components.tsv"
row="$(awk -F'\t' -v n="$name" '$1 == n {print $2" "$3" "$4}' "$table")"
[[ -n "$row" && -n "$name" ]] || die "usage: tools/build-component.sh NAME (NAME from $table)"
read -r module version binary <<<"$row"

out="$cache/$name-$version"
bin="$out/$binary"
if [[ -x "$bin" ]]; then printf '%s\n' "$bin"; exit 0; fi
command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.23)"

# GOTOOLCHAIN=local: never let go.mod of a module fetch another toolchain (the package list allows one
# named version only, and none of these modules needs it).
export GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOWORK=off GOTOOLCHAIN=local
mkdir -p "$cache"
work="$(mktemp -d "$cache/.build-$name.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# A wrapper module that takes the program as a tool dependency (the module row's way for Jaeger).
build_jaeger() {
  mkdir -p "$work/wrap" && cd "$work/wrap"
  go mod init wrap >/dev/null 2>&1
  retry go get -tool "$module/cmd/jaeger@$version" >&2
  retry go build -ldflags "-s -w" -o "$work/bin/jaeger" "$module/cmd/jaeger" >&2
}

build_victorialogs() {
  mkdir -p "$work/wrap" && cd "$work/wrap"
  go mod init wrap >/dev/null 2>&1
  retry go get "$module/app/victoria-logs@$version" >&2
  retry go build -ldflags "-s -w" -o "$work/bin/victoria-logs" "$module/app/victoria-logs" >&2
}

# Validation only: `docker-compose config -q` checks the compose file without an engine.
build_docker_compose() {
  mkdir -p "$work/wrap" && cd "$work/wrap"
  go mod init wrap >/dev/null 2>&1
  retry go get "$module/cmd@$version" >&2
  retry go build -ldflags "-s -w" -o "$work/bin/docker-compose" "$module/cmd" >&2
}

build_jsonnet() {
  mkdir -p "$work/wrap" && cd "$work/wrap"
  go mod init wrap >/dev/null 2>&1
  retry go get "$module/cmd/jsonnet@$version" "$module/cmd/jsonnetfmt@$version" "$module/cmd/jsonnet-lint@$version" >&2
  for cmd in jsonnet jsonnetfmt jsonnet-lint; do
    retry go build -ldflags "-s -w" -o "$work/bin/$cmd" "$module/cmd/$cmd" >&2
  done
}

log "building $module@$version into $out (minutes, once)"
start=$SECONDS
mkdir -p "$work/bin"
"build_${name//-/_}"
[[ -x "$work/bin/$binary" ]] || die "the build finished but produced no $binary"
rm -rf "$out.tmp.$$"
mkdir -p "$out.tmp.$$"
mv "$work/bin/"* "$out.tmp.$$/"
rm -rf "$out" && mv "$out.tmp.$$" "$out"
log "built in $((SECONDS - start))s: $bin"
printf '%s\n' "$bin"
