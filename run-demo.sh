#!/usr/bin/env bash
# The main job (README: "Run it"): installs dependencies, builds, then runs
# a local gateway in network namespaces with real openvpn and sample
# clients (cluster-tests/demo.sh). Ctrl-C stops it and removes everything
# it created. DEMO_SECONDS=N stops it after N seconds.
set -euo pipefail
cd "$(dirname "$0")"
./deploy/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target ovhad ovhactl
OVHA_BIN="$(pwd)/build/bin" exec bash cluster-tests/demo.sh
