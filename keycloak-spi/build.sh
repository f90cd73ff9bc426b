#!/usr/bin/env bash
# Builds the keycloak-sync event listener offline: javac against Debian's jars and the
# compile-only declarations of the Keycloak SPI in src/keycloak-api (never packaged),
# then runs the JUnit 5 tests with the console launcher.
#
#   keycloak-spi/build.sh           build target/keycloak-sync-spi.jar and run the tests
#   keycloak-spi/build.sh jar       build the jar only
#   keycloak-spi/build.sh bench     build, then run the publisher benchmark
#
# The tests that need RabbitMQ use KCS_TEST_AMQP_URL (see scripts/services.sh env).
# With Maven Central at hand, `mvn package` (pom.xml) builds the same sources against the
# real Keycloak artifacts.
set -euo pipefail
cd "$(dirname "$0")"

JARS=/usr/share/java
PACKAGES=(default-jdk-headless librabbitmq-client-java libjackson2-databind-java libjboss-logging-java
    libslf4j-java junit5)
missing=()
command -v javac >/dev/null || missing+=(default-jdk-headless)
for jar in amqp-client jackson-databind jackson-core jackson-annotations jboss-logging slf4j-api \
    junit-platform-console-standalone; do
    [[ -f "$JARS/$jar.jar" ]] || missing+=("$jar")
done
if ((${#missing[@]})); then
    echo "keycloak-spi: installing ${PACKAGES[*]} (missing: ${missing[*]})" >&2
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi

LIBS="$JARS/amqp-client.jar:$JARS/jackson-databind.jar:$JARS/jackson-core.jar:$JARS/jackson-annotations.jar:$JARS/jboss-logging.jar:$JARS/slf4j-api.jar"
OUT=target
rm -rf "$OUT/keycloak-api" "$OUT/classes" "$OUT/test-classes" "$OUT/bundle"
mkdir -p "$OUT/keycloak-api" "$OUT/classes" "$OUT/test-classes" "$OUT/bundle"

mapfile -t api_sources < <(find src/keycloak-api/java -name '*.java')
mapfile -t main_sources < <(find src/main/java -name '*.java')
javac --release 17 -nowarn -d "$OUT/keycloak-api" "${api_sources[@]}"
javac --release 17 -Xlint:all,-processing,-serial -Werror -d "$OUT/classes" \
    -cp "$OUT/keycloak-api:$LIBS" "${main_sources[@]}"
cp -r src/main/resources/. "$OUT/classes/"

# One jar for Keycloak's providers/ directory: the listener and the RabbitMQ client it
# uses (Keycloak itself provides Jackson, JBoss Logging and SLF4J).
(cd "$OUT/bundle" && jar xf "$JARS/amqp-client.jar" && rm -rf META-INF)
cp -r "$OUT/classes/." "$OUT/bundle/"
jar cf "$OUT/keycloak-sync-spi.jar" -C "$OUT/bundle" .
echo "keycloak-spi: built $OUT/keycloak-sync-spi.jar" >&2

[[ "${1:-test}" == jar ]] && exit 0

TEST_CP="$OUT/classes:$OUT/keycloak-api:$LIBS:$JARS/junit-platform-console-standalone.jar"
mapfile -t test_sources < <(find src/test/java -name '*.java')
javac --release 17 -nowarn -d "$OUT/test-classes" -cp "$TEST_CP" "${test_sources[@]}"
# For the end-to-end test on the Rust side (tests/it/spi.rs), which runs ScriptedHistory.
echo "$PWD/$OUT/test-classes:$PWD/$OUT/classes:$PWD/$OUT/keycloak-api:$LIBS" >"$OUT/test-classpath"

if [[ "${1:-test}" == bench ]]; then
    exec java -cp "$OUT/test-classes:$TEST_CP" io.keycloaksync.spi.PublisherBenchmark "${@:2}"
fi

java -Djava.util.logging.config.file=src/test/resources/logging.properties \
    -jar "$JARS/junit-platform-console-standalone.jar" \
    --class-path "$OUT/test-classes:$OUT/classes:$OUT/keycloak-api:$LIBS" \
    --scan-class-path "$OUT/test-classes" --disable-banner --details=tree --fail-if-no-tests
