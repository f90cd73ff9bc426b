#!/usr/bin/env bash
# Builds the keycloak-sync event listener with Maven against Keycloak's own artifacts
# (pom.xml; dependencies from Maven Central, cached in ~/.m2 afterwards) and runs its JUnit
# tests through Surefire.
#
#   keycloak-spi/build.sh           build target/keycloak-sync-spi.jar and run the tests
#   keycloak-spi/build.sh jar       build the jar only
#   keycloak-spi/build.sh bench     build, then run the publisher benchmark
#
# The tests that need RabbitMQ use KCS_TEST_AMQP_URL (see scripts/services.sh env).
# KCS_KEYCLOAK_VERSION builds against another Keycloak version than pom.xml's.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v javac >/dev/null || missing+=(default-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
if ((${#missing[@]})); then
    echo "keycloak-spi: installing ${missing[*]}" >&2
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

opts=(-B --no-transfer-progress)
[[ -n "${KCS_KEYCLOAK_VERSION:-}" ]] && opts+=("-Dkeycloak.version=$KCS_KEYCLOAK_VERSION")

case "${1:-test}" in
jar)
    mvn -q "${opts[@]}" -DskipTests package
    ;;
bench)
    mvn -q "${opts[@]}" -DskipTests package
    exec java -cp "target/test-classes:target/classes:$(cat target/dependency-classpath)" \
        io.keycloaksync.spi.PublisherBenchmark "${@:2}"
    ;;
test)
    # Without -q: Surefire's per-class lines and summary are the test report.
    mvn "${opts[@]}" package | grep -vE '^\[INFO\] (Download|---|$|Building|BUILD|Total time|Finished at|Excluding)'
    ;;
*)
    echo "usage: build.sh [test|jar|bench]" >&2
    exit 2
    ;;
esac
# For the end-to-end test on the Rust side (tests/it/spi.rs), which runs ScriptedHistory.
echo "$PWD/target/test-classes:$PWD/target/classes:$(cat target/dependency-classpath)" >target/test-classpath
echo "keycloak-spi: built target/keycloak-sync-spi.jar" >&2
