#!/usr/bin/env bash
# test-end-to-end-tracing.sh: runs scripts/test-end-to-end-tracing (task-manager and web-crawler under the agent, traces asserted) as part of make check.
exec bash "$(dirname "$0")/../../scripts/test-end-to-end-tracing" "$@"
