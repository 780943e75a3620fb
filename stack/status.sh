#!/usr/bin/env bash
# One line per component of the test stack: running/stopped, pid, port.
# Exit status 0 only when every component runs.
set -euo pipefail
# shellcheck source=stack/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=stack/prometheus.sh
source "$STACK_SRC/prometheus.sh"
out=$(print_status; prom_status_line)
printf '%s\n' "$out"
! grep -q ' stopped ' <<<"$out"
