#!/usr/bin/env bash
# Installs the machine-level packages the test environment needs (Debian
# packages only; everything else is fetched by the component scripts from the
# language registries and cached). Idempotent: installs only what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in java mvn go cargo npm python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed: this machine kind ships it"
done
ensure_apt openssl unzip procps ca-certificates umoci binutils jq
