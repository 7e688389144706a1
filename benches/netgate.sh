#!/usr/bin/env bash
# The network gate's costs, against a bare baseline in the same run (release build):
# throughput of one transfer through a CONNECT tunnel (splice and copy relays) vs a direct
# loopback copy, the latency a connection to an already-approved host adds, and 200
# tunnels held open at once. See netgate/benches/relay.rs.
#
#   benches/netgate.sh                 (1 GiB per transfer, best of ROUNDS rounds, default 5)
#   SIZE=32M ROUNDS=1 benches/netgate.sh   (the small run CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --quiet -p execgate-netgate --bench relay -- \
    --size "${SIZE:-1G}" --rounds "${ROUNDS:-5}" --latency "${LATENCY:-1000}" --held "${HELD:-200}"
