#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest with real brokers when they can be started.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# Real RabbitMQ, an SQS server (moto) and PostgreSQL for the broker and store tests. The helper script comes with the
# workplace (../shared/tools/services.sh); without it, broker tests skip (they fail under CI=1).
SERVICES_SH=${SERVICES_SH:-../shared/tools/services.sh}
if [[ -f "$SERVICES_SH" ]]; then
  # moto gets its own venv: its boto3 pins a botocore that aiobotocore does not accept.
  MOTO_VENV=${MOTO_VENV:-/tmp/asya-moto-venv}
  [[ -x "$MOTO_VENV/bin/python" ]] || python3 -m venv "$MOTO_VENV"
  SERVICES_PYTHON="$MOTO_VENV/bin/python" bash "$SERVICES_SH" start rabbitmq sqs postgres
  eval "$(bash "$SERVICES_SH" env rabbitmq sqs postgres)"
fi

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/pytest" "$@"
