#!/usr/bin/env bash
# Make sure a Java runtime Spark 4.1 supports (17 or 21) is there; install OpenJDK 17 if we can.
set -euo pipefail
java_major() {
  "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\(\.\([0-9]*\)\)\{0,1\}.*/\1 \3/p' | head -1 |
    awk '{ if ($1 == 1) print $2; else print $1 }'
}
candidate="${JAVA_HOME:+$JAVA_HOME/bin/java}"
candidate="${candidate:-$(command -v java || true)}"
if [ -n "$candidate" ] && [ -x "$candidate" ]; then
  major="$(java_major "$candidate")"
  if [ "$major" = "17" ] || [ "$major" = "21" ]; then exit 0; fi
  echo "ensure-java: $candidate is Java $major; Spark 4.1 needs Java 17 or 21" >&2
fi
for home in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-21-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64; do
  if [ -x "$home/bin/java" ]; then
    echo "ensure-java: found $home; export JAVA_HOME=$home to use it" >&2
    exit 1
  fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "ensure-java: installing openjdk-17-jre-headless" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "ensure-java: no Java 17 or 21 found. Install one (e.g. openjdk-17-jre-headless) and set JAVA_HOME." >&2
exit 1
