#!/usr/bin/env bash
# The port proxy (`-p HOST:CTR`, src/net/proxy.rs + src/kernel/relay.rs) against direct loopback:
# 1 GiB sent over one TCP connection straight to a server on 127.0.0.2, and the same through a
# real proxy process (forked by `stepctr::net::proxy::start`, as `run -p` does) listening on
# 127.0.0.1. The server discards what it reads and answers with the count when the client
# half-closes; the time is the client's, from connect to that answer. Runs alternate (direct,
# proxy, direct, ...) after one warm-up run of each, with a short pause before each; medians.
# Goal (issue 6): the proxy at >= 80% of direct loopback throughput.
#
# The client, the server and the measurement live in tests/proxy.rs (the ignored trial
# `throughput`), built in release mode; no socat, nc or python needed. It also prints the CPU
# time used per GiB by the client and server (one process) and by the proxy: through the proxy,
# three processes share the machine's CPUs instead of two.
#
# Needs cargo and jq; root is not needed. Writes one JSON line to bench/results/.
# Usage: bench/port-proxy.sh [ROUNDS]              (default 5 runs of each)
#        PROXY_BENCH_BYTES=268435456 bench/port-proxy.sh   (another size)
set -euo pipefail

rounds=${1:-5}
bytes=${PROXY_BENCH_BYTES:-1073741824}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"
die() { echo "port-proxy: $*" >&2; exit 1; }
for tool in cargo jq; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

echo "# building tests/proxy.rs (release)"
bin=$(cd "$repo" && cargo test --release --test proxy --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "proxy" and .profile.test) | .executable')
[[ -x $bin ]] || die "no test binary built"

echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(PROXY_BENCH_ROUNDS=$rounds PROXY_BENCH_BYTES=$bytes \
    "$bin" --ignored --exact throughput --nocapture --test-threads 1 2>&1) ||
    { echo "$out" >&2; die "the measurement failed"; }
sed -nE 's/^(test throughput \.\.\. )?((.* MiB x |CPU s per GiB).*)/\2/p' <<<"$out"

mkdir -p "$results"
json="$results/port-proxy-$(date -u +%Y%m%dT%H%M%SZ).json"
sed -n 's/^json: //p' <<<"$out" | jq --arg cpus "$(nproc)" --arg load "$(cut -d' ' -f1 /proc/loadavg)" \
    '. + {cpus: ($cpus | tonumber), load: ($load | tonumber)}' >"$json"
echo "# JSON: ${json#"$repo"/}"
