#!/usr/bin/env bash
# Installs everything pipeline_worker needs on Debian 12 (apt packages), then builds and installs the extension.
# Idempotent; run as root (or with sudo available).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo

PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libcurl4-openssl-dev libipc-run-perl
          g++ make cmake libgtest-dev curl prometheus-postgres-exporter)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The HTTP tests' endpoint (test/http/server.js) runs on Node: any node on PATH will do, else Debian's.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    # Debian's postgresql package would create and start a "main" cluster; we only need the binaries.
    $SUDO mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/pipeline_worker.conf >/dev/null
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The exporter's package enables and starts its service (port 9187 on every interface, no DSN set): the tests run
    # the binary by hand (test/scripts/exporter.sh), so leave the service stopped and disabled when we installed it.
    if [[ " ${missing[*]} " == *" prometheus-postgres-exporter "* ]] && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus-postgres-exporter >/dev/null 2>&1 || true
    fi
fi
export PATH=/usr/lib/postgresql/15/bin:$PATH

echo "setup: building and installing pipeline_worker"
make -C "$ROOT" -s -j2 >/dev/null
$SUDO make -C "$ROOT" -s install >/dev/null
echo "setup: installed $(pg_config --pkglibdir)/pipeline_worker.so"
